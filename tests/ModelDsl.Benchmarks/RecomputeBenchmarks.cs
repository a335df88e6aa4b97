using System;
using System.Collections.Generic;
using System.Linq;
using ModelDsl.Runtime.Training;
using ModelDsl.Runtime.Training.MixedPrecision;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Benchmarks;

/// <summary>A wider GPT block stack than CharGpt's: 8 layers of 256 over 128 positions (6.4M parameters).</summary>
[Model(Input = "B, T", InputType = DType.Int64)]
public partial class WideGpt
{
    [Embedding(65, 256)]                      public partial Embedding Tokens { get; }
    [PositionalEmbedding(128)]                public partial PositionalEmbedding Positions { get; }
    [TransformerBlock(Heads = 8, Repeat = 8)] public partial TransformerBlock Blocks { get; }
    [LayerNorm]                               public partial LayerNorm Norm { get; }
    [Linear(65, TiedTo = nameof(Tokens))]     public partial Linear Head { get; }
}

/// <summary>
/// Activation recomputation (<see cref="BlockRecompute"/>) against the plain step (<c>-- --recompute [rounds [threads]]</c>):
/// the same model, batch and optimiser (AdamW) through <see cref="TrainingStep"/>, one model with its blocks recomputing.
/// Activation bytes are the <see cref="MemoryProbe"/>'s (heap held after the loss, plus the largest recomputed block in
/// backward); step times are medians over rounds of interleaved phases, the order alternating per round.
/// </summary>
public static class RecomputeBenchmarks
{
    public static int Run(int rounds, int threads)
    {
        set_num_threads(threads);
        Console.WriteLine($"CPU: {CpuFeatures.Current.Model}; {threads} thread(s); load {MixedPrecisionBenchmarks.LoadAverage()}");
        Console.WriteLine("| model | batch | plain activations MB | recomputed activations MB | plain ms/step | recomputed ms/step | recomputed / plain time |");
        Console.WriteLine("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
        Measure("CharGpt (0.8M, 4 × 128)", "16 × 64 tokens", () => new BenchGpt(), new long[] { 16, 64 }, 5, rounds);
        Measure("wide GPT (6.4M, 8 × 256)", "8 × 128 tokens", () => new WideGpt(), new long[] { 8, 128 }, 2, rounds);
        return 0;
    }

    private static void Measure(string name, string batch, Func<nn.Module<Tensor, Tensor>> create, long[] shape, int steps, int rounds)
    {
        manual_seed(3);
        var x = randint(0, 65, shape);
        var y = randint(0, 65, shape);
        var plan = new TrainingPlan { ModelName = name, SampleShape = Array.Empty<long>(), Loss = Loss.CrossEntropy, Optimizer = Optimizer.AdamW };
        var sides = new[] { false, true }.Select(recompute =>
        {
            manual_seed(7);
            var model = create();
            model.train();
            if (recompute) _ = BlockRecompute.Apply(model); // for the life of the benchmark
            var optimizer = Trainer.CreateOptimizer(plan, model);
            var probe = new MemoryProbe { Armed = true };
            var step = new TrainingStep(model, optimizer, Loss.CrossEntropy, 0) { Probe = probe };
            MixedPrecisionBenchmarks.Phase(step, x, y, 2); // warm-up, and the measured steps
            probe.AfterStep(model, optimizer);
            step.Probe = null;
            return (Step: step, Activations: probe.Measured?.Activations ?? 0, Times: new List<double>());
        }).ToArray();
        for (int r = 0; r < rounds; r++)
            foreach (int s in r % 2 == 0 ? new[] { 0, 1 } : new[] { 1, 0 })
                sides[s].Times.Add(MixedPrecisionBenchmarks.Phase(sides[s].Step, x, y, steps) / steps);
        double plain = MixedPrecisionBenchmarks.Median(sides[0].Times), recomputed = MixedPrecisionBenchmarks.Median(sides[1].Times);
        Console.WriteLine($"| {name} | {batch} | {sides[0].Activations / 1e6:0.0} | {sides[1].Activations / 1e6:0.0} | {plain:0.0} | {recomputed:0.0} | **{recomputed / plain:0.00}×** |");
    }
}
