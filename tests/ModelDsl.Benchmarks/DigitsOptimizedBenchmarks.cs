using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using ModelDsl.Runtime.Optimization;
using ModelDsl.Runtime.Pruning;
using ModelDsl.Runtime.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Benchmarks;

/// <summary>
/// The main job's model (the sample's DigitsCnn, <see cref="GeneratedCnn"/>) at inference, fp32 against what
/// optimisation plans make of it, at batch 1 and 64 on 1 and 2 torch threads, interleaved in one process:
/// <list type="bullet">
/// <item><b>fp32</b>: the trained-size model (the baseline);</item>
/// <item><b>old plan: Hidden50+Int8</b>: the sample's former plan (structured 50% of Hidden, dynamic int8 Linear layers);</item>
/// <item><b>Conv50+Hidden50</b>: structured 50% of Conv1, Conv2 and Hidden (the cut runs through the BatchNorms);</item>
/// <item><b>plan: Conv50+Hidden50+Fold</b>: the same with each BatchNorm2d folded into its convolution
/// (<see cref="Fusion.FuseConvBnEval"/>): the main job's plan, what the pipeline leaves in <c>optimized.bin</c>;</item>
/// <item><b>plan + Int8</b>: and the Linear layers dynamic int8 (what <c>[Quantize]</c> would add);</item>
/// <item><b>fp32 + StaticInt8</b> / <b>plan + StaticInt8</b>: static int8 (<see cref="Quantize.Static"/>, what
/// <c>[Quantize(QuantizeMode.StaticInt8)]</c> adds: BatchNorms fused, Conv2d and Linear int8, calibrated on four random
/// batches) of the trained-size model and of the cut one.</item>
/// </list>
/// The weights are seeded, not trained (time does not depend on their values). Then a per-layer breakdown of the
/// fp32 and the optimised model. Run: <c>dotnet run -c Release --project tests/ModelDsl.Benchmarks -- --digits-optimized [rounds]</c>.
/// </summary>
public static class DigitsOptimizedBenchmarks
{
    private static GeneratedCnn Build()
    {
        manual_seed(3);
        var model = new GeneratedCnn();
        using (no_grad())
        {
            // Running statistics away from (0, 1), as after training, so folding has something to fold.
            foreach (var (name, buffer) in model.named_buffers())
            {
                if (name.EndsWith("running_mean", StringComparison.Ordinal)) buffer.copy_(randn_like(buffer) * 0.1);
                if (name.EndsWith("running_var", StringComparison.Ordinal)) buffer.copy_(rand_like(buffer) + 0.5);
            }
        }
        model.eval();
        return model;
    }

    /// <summary>Structured 50% cuts of the named targets, as the pipeline's Structured pass makes them (through the BatchNorm after a convolution).</summary>
    private static GeneratedCnn Cut(bool convolutions)
    {
        var m = Build();
        if (convolutions)
        {
            var (c1, n1, c2) = Prune.ShrinkConv2dOutputs(m.Conv1, m.Norm1, m.Conv2, 0.5);
            m.ReplaceLayer(nameof(m.Conv1), c1); m.ReplaceLayer(nameof(m.Norm1), n1!); m.ReplaceLayer(nameof(m.Conv2), c2);
            var (c2b, n2, hidden) = Prune.ShrinkConv2dOutputs(c2, m.Norm2, m.Hidden, 0.5);
            m.ReplaceLayer(nameof(m.Conv2), c2b); m.ReplaceLayer(nameof(m.Norm2), n2!); m.ReplaceLayer(nameof(m.Hidden), hidden);
        }
        var (h, o) = Prune.ShrinkLinearOutputs((Linear)m.GetLayer(nameof(m.Hidden)), m.Output, 0.5);
        m.ReplaceLayer(nameof(m.Hidden), h); m.ReplaceLayer(nameof(m.Output), o);
        m.eval();
        return m;
    }

    private static GeneratedCnn Fold(GeneratedCnn m)
    {
        foreach (var (conv, norm) in new[] { (nameof(m.Conv1), nameof(m.Norm1)), (nameof(m.Conv2), nameof(m.Norm2)) })
        {
            m.ReplaceLayer(conv, Fusion.FuseConvBnEval((Conv2d)m.GetLayer(conv), (BatchNorm2d)m.GetLayer(norm)));
            m.ReplaceLayer(norm, new FoldedBatchNorm());
        }
        m.eval();
        return m;
    }

    private static GeneratedCnn Int8(GeneratedCnn m)
    {
        foreach (var name in new[] { nameof(m.Hidden), nameof(m.Output) })
            m.ReplaceLayer(name, Quantize.Dynamic((Linear)m.GetLayer(name), QuantizeMode.DynamicInt8));
        m.eval();
        return m;
    }

    private static GeneratedCnn Static(GeneratedCnn m)
    {
        using var generator = new Generator(5);
        var batches = Enumerable.Range(0, 4).Select(_ => rand(new long[] { 64, 1, 8, 8 }, generator: generator)).ToList();
        Quantize.Static(m, batches);
        foreach (var b in batches) b.Dispose();
        return m;
    }

    /// <summary>Runs the check: <paramref name="rounds"/> interleaved rounds per (threads, batch).</summary>
    public static void Run(int rounds)
    {
        var fp32Static = Static(Build());
        var planStatic = Static(Cut(convolutions: true));
        var variants = new (string Name, GeneratedCnn Model, Int8Kernel? Kernel)[]
        {
            ("fp32", Build(), null),
            ("old plan: Hidden50+Int8", Int8(Cut(convolutions: false)), null),
            ("Conv50+Hidden50", Cut(convolutions: true), null),
            ("plan: Conv50+Hidden50+Fold", Fold(Cut(convolutions: true)), null),
            ("plan + Int8", Int8(Fold(Cut(convolutions: true))), null),
            ("fp32 + StaticInt8", fp32Static, null),
            ("plan + StaticInt8", planStatic, null),
            // What an AVX2-only CPU runs (the kernel forced; bytes above 127 take the exact split step), and the scalar
            // kernel such a CPU fell back to before for any call with a byte above 127.
            ("fp32 + StaticInt8 [Avx2]", fp32Static, Int8Kernel.Avx2),
            ("plan + StaticInt8 [Avx2]", planStatic, Int8Kernel.Avx2),
            ("plan + StaticInt8 [Scalar]", planStatic, Int8Kernel.Scalar),
        };
        variants = variants.Where(v => v.Kernel is not { } k || Int8Gemm.IsSupported(k)).ToArray();
        Console.WriteLine("Digits CNN inference (no_grad, eval): fp32 against optimised variants; speed-up = fp32 time / variant time in the same round (median, IQR)");
        foreach (int threads in new[] { 1, 2 })
        {
            set_num_threads(threads);
            foreach (long batch in new long[] { 1, 64 })
            {
                manual_seed(42);
                using var x = rand(batch, 1, 8, 8);
                Measure(variants, x, rounds, $"threads {threads}, batch {batch}");
            }
        }
        set_num_threads(2);
        foreach (long batch in new long[] { 1, 64 })
        {
            manual_seed(42);
            using var x = rand(batch, 1, 8, 8);
            PerLayer(variants[0], x);
            PerLayer(variants[3], x);
            PerLayer(variants[6], x);
        }
        foreach (var model in variants.Select(v => v.Model).Distinct()) model.Dispose();
    }

    private static void Forward((string Name, GeneratedCnn Model, Int8Kernel? Kernel) variant, Tensor x)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        Int8Gemm.Forced = variant.Kernel;
        try { variant.Model.call(x); }
        finally { Int8Gemm.Forced = null; }
    }

    private static void Measure((string Name, GeneratedCnn Model, Int8Kernel? Kernel)[] variants, Tensor x, int rounds, string label)
    {
        foreach (var variant in variants) for (int i = 0; i < 5; i++) Forward(variant, x);
        var counts = variants.Select(v =>
        {
            var probe = Stopwatch.StartNew();
            int n = 0;
            while (probe.Elapsed.TotalMilliseconds < 50) { Forward(v, x); n++; }
            return Math.Max(1, (int)(n * 100 / probe.Elapsed.TotalMilliseconds));
        }).ToArray();
        var times = variants.Select(_ => new List<double>()).ToArray();
        var ratios = variants.Select(_ => new List<double>()).ToArray();
        for (int r = 0; r < rounds; r++)
        {
            var roundTimes = new double[variants.Length];
            for (int j = 0; j < variants.Length; j++)
            {
                int i = (j + r) % variants.Length; // rotate the order every round
                var sw = Stopwatch.StartNew();
                for (int k = 0; k < counts[i]; k++) Forward(variants[i], x);
                roundTimes[i] = sw.Elapsed.TotalMilliseconds / counts[i];
            }
            for (int i = 0; i < variants.Length; i++)
            {
                times[i].Add(roundTimes[i]);
                ratios[i].Add(roundTimes[0] / roundTimes[i]);
            }
        }
        Console.WriteLine($"{label}: {rounds} rounds");
        Console.WriteLine($"  {"variant",-30}{"median ms",11}{"speed-up",10}{"IQR",16}");
        for (int i = 0; i < variants.Length; i++)
        {
            var (q1, q3) = Quartiles(ratios[i]);
            Console.WriteLine($"  {variants[i].Name,-30}{Median(times[i]),11:F4}{Median(ratios[i]),9:F2}x{$"{q1:F2}-{q3:F2}",16}");
        }
    }

    /// <summary>Median time of each layer of a model run on its own, in forward's order (2 threads).</summary>
    private static void PerLayer((string Name, GeneratedCnn Model, Int8Kernel? Kernel) variant, Tensor input)
    {
        var host = (ILayerHost)variant.Model;
        var times = host.LayerNames.ToDictionary(n => n, _ => new List<double>());
        for (int run = 0; run < 200; run++)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var x = input;
            foreach (var name in host.LayerNames)
            {
                var layer = (nn.Module<Tensor, Tensor>)host.GetLayer(name);
                var sw = Stopwatch.StartNew();
                x = layer.call(x);
                times[name].Add(sw.Elapsed.TotalMilliseconds);
            }
        }
        Console.WriteLine($"per layer, {variant.Name}, batch {input.shape[0]} (median µs): " +
            string.Join(", ", host.LayerNames.Select(n => $"{n} {Median(times[n].Skip(20).ToList()) * 1000:F1}")));
    }

    private static double Median(List<double> values)
    {
        var s = values.OrderBy(v => v).ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }

    private static (double Q1, double Q3) Quartiles(List<double> values)
    {
        var s = values.OrderBy(v => v).ToArray();
        return (s[(int)Math.Floor((s.Length - 1) * 0.25)], s[(int)Math.Ceiling((s.Length - 1) * 0.75)]);
    }
}
