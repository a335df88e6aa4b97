using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using ModelDsl.Runtime.Training;
using ModelDsl.Runtime.Training.MixedPrecision;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Benchmarks;

/// <summary>A wide MLP: where bfloat16 matrix kernels have enough work to pay for the casts.</summary>
[Model(Input = "B, 1024")]
public partial class WideMlp
{
    [Linear(4096)] public partial Linear Hidden1 { get; }
    [GELU]         public partial GELU Act1 { get; }
    [Linear(1024)] public partial Linear Hidden2 { get; }
    [GELU]         public partial GELU Act2 { get; }
    [Linear(10)]   public partial Linear Output { get; }
}

/// <summary>
/// The trainer's step in bf16 mixed precision against the same step in fp32 (<c>-- --bf16 [rounds [threads]]</c>): the
/// same model, batch and optimiser (AdamW), <see cref="TrainingStep"/> with a <see cref="BFloat16Training"/> working
/// copy against <see cref="Float32Training"/>. Each round times a phase of steps for each precision, the order
/// alternating per round; the ratio is of the medians over the rounds (fp32 time / bf16 time: above 1, bf16 is faster).
/// Models: the Digits MLP and CNN at batch 64 (the CNN's convolutions stay fp32), the CharGpt sample's GPT at 16 × 64
/// tokens, and a wide MLP (1024 → 4096 → 1024) at batch 256.
/// </summary>
public static class MixedPrecisionBenchmarks
{
    public static int Run(int rounds, int threads)
    {
        set_num_threads(threads);
        var cpu = CpuFeatures.Current;
        Console.WriteLine($"CPU: {cpu.Model}; bf16 flags: {(cpu.BFloat16Flags.Length == 0 ? "none (bf16 would fall back to fp32 in the trainer; measured here anyway)" : cpu.BFloat16Flags)}; {threads} thread(s); load {LoadAverage()}");
        Console.WriteLine("| model | batch | fp32 ms/step | bf16 ms/step | fp32 / bf16 |");
        Console.WriteLine("| --- | --- | --- | --- | --- |");
        Measure("Digits MLP", "64 × 64", () => new GeneratedDigitsMlp(), () => randn(64, 64), () => randint(0, 10, 64), 20, rounds);
        Measure("Digits CNN", "64 × 1×8×8", () => new GeneratedCnn(), () => randn(64, 1, 8, 8), () => randint(0, 10, 64), 20, rounds);
        Measure("CharGpt (0.8M)", "16 × 64 tokens", () => new BenchGpt(), () => randint(0, 65, new long[] { 16, 64 }), () => randint(0, 65, new long[] { 16, 64 }), 5, rounds);
        Measure("wide MLP (8.4M)", "256 × 1024", () => new WideMlp(), () => randn(256, 1024), () => randint(0, 10, 256), 5, rounds);
        return 0;
    }

    private static void Measure(string name, string batch, Func<nn.Module<Tensor, Tensor>> create, Func<Tensor> input, Func<Tensor> target, int steps, int rounds)
    {
        manual_seed(3);
        var x = input();
        var y = target();
        var plan = new TrainingPlan { ModelName = name, SampleShape = Array.Empty<long>(), Loss = Loss.CrossEntropy, Optimizer = Optimizer.AdamW };
        var sides = new[] { false, true }.Select(bf16 =>
        {
            manual_seed(7);
            var model = create();
            model.train();
            var optimizer = Trainer.CreateOptimizer(plan, model);
            ITrainingPrecision precision = bf16 ? new BFloat16Training(model, create()) : new Float32Training(model);
            // Language models' scores (B, T, V) flatten for the loss; the trainer's LossFunctions do the same.
            var step = new TrainingStep(model, optimizer, Loss.CrossEntropy, 0, precision: precision);
            return (Step: step, Times: new List<double>());
        }).ToArray();
        foreach (var side in sides) Phase(side.Step, x, y, 2); // warm-up: oneDNN builds its kernels on first use
        for (int r = 0; r < rounds; r++)
            foreach (int s in r % 2 == 0 ? new[] { 0, 1 } : new[] { 1, 0 })
                sides[s].Times.Add(Phase(sides[s].Step, x, y, steps) / steps);
        double fp32 = Median(sides[0].Times), bf16 = Median(sides[1].Times);
        Console.WriteLine($"| {name} | {batch} | {fp32:0.00} | {bf16:0.00} | **{fp32 / bf16:0.00}×** |");
    }

    internal static double Phase(TrainingStep step, Tensor x, Tensor y, int steps)
    {
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < steps; i++)
        {
            using var scope = NewDisposeScope();
            step.Run(x, y);
        }
        return clock.Elapsed.TotalMilliseconds;
    }

    internal static double Median(List<double> values)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    internal static string LoadAverage()
    {
        try { return string.Join(" ", System.IO.File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (System.IO.IOException) { return "?"; }
    }
}
