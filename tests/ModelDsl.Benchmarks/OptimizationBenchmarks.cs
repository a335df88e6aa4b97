using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using BenchmarkDotNet.Attributes;
using ModelDsl.Runtime.Pruning;
using ModelDsl.Runtime.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Benchmarks;

/// <summary>
/// Inference on a Linear-heavy MLP — Linear(4096, 4096), ReLU, Linear(4096, 4096), ReLU, Linear(4096, 10) — at batch
/// 64 on 2 torch threads, dense float32 (the baseline) against the optimised variants:
/// <list type="bullet">
/// <item><b>DynamicInt8</b>: <c>Quantize.Dynamic(model, QuantizeMode.DynamicInt8)</c> (target ≥ 3x);</item>
/// <item><b>Structured50</b>: both hidden layers shrunk to 2048 neurons by <c>Prune.ShrinkLinearOutputs</c> (target ≥ 1.7x);</item>
/// <item><b>Unstructured50</b>: 50% of both hidden weights zeroed by <c>Prune.L1Unstructured</c> then <c>Prune.Remove</c>
/// (expected ≈ 1.0x: zeros in a dense matrix cost the same on dense kernels);</item>
/// <item><b>Structured50+Int8</b>: the shrunk model, quantised.</item>
/// </list>
/// </summary>
/// <remarks>
/// All variants come from the same seeded model and see the same input; each invocation runs under <c>no_grad</c> in
/// its own dispose scope. <see cref="RunInterleaved"/> is the load-robust cross-check (and runs the PyTorch peer).
/// </remarks>
[MedianColumn]
public class OptimizationBenchmarks
{
    private const int Batch = 64;
    private const int Hidden = 4096;

    private nn.Module<Tensor, Tensor> _dense = null!;
    private nn.Module<Tensor, Tensor> _int8 = null!;
    private nn.Module<Tensor, Tensor> _structured = null!;
    private nn.Module<Tensor, Tensor> _unstructured = null!;
    private nn.Module<Tensor, Tensor> _structuredInt8 = null!;
    private Tensor _input = null!;

    /// <summary>The MLP, built from <c>manual_seed(1)</c>.</summary>
    public static Sequential BuildMlp()
    {
        manual_seed(1);
        var model = nn.Sequential(
            ("fc1", nn.Linear(Hidden, Hidden)), ("act1", nn.ReLU()),
            ("fc2", nn.Linear(Hidden, Hidden)), ("act2", nn.ReLU()),
            ("head", nn.Linear(Hidden, 10)));
        model.eval();
        return model;
    }

    /// <summary>Torch threads; 2 for the benchmark (the interleaved check can take another count).</summary>
    public int Threads { get; set; } = 2;

    [GlobalSetup]
    public void Setup()
    {
        set_num_threads(Threads);
        _dense = BuildMlp();
        _int8 = Quantize.Dynamic(_dense, QuantizeMode.DynamicInt8);

        var layers = _dense.named_children().ToDictionary(c => c.name, c => c.module);
        var (fc1, fc2) = Prune.ShrinkLinearOutputs((Linear)layers["fc1"], (Linear)layers["fc2"], 0.5);
        var (fc2b, head) = Prune.ShrinkLinearOutputs(fc2, (Linear)layers["head"], 0.5);
        _structured = nn.Sequential(("fc1", fc1), ("act1", nn.ReLU()), ("fc2", fc2b), ("act2", nn.ReLU()), ("head", head));
        _structured.eval();
        _structuredInt8 = Quantize.Dynamic(_structured, QuantizeMode.DynamicInt8);

        var unstructured = BuildMlp();
        foreach (var name in new[] { "fc1", "fc2" })
        {
            var layer = (Linear)unstructured.named_children().First(c => c.name == name).module;
            Prune.L1Unstructured(layer, "weight", 0.5);
            Prune.Remove(layer, "weight");
        }
        _unstructured = unstructured;

        manual_seed(42);
        _input = randn(Batch, Hidden);

        // Sanity, so that a broken variant cannot post a good time: shapes agree, int8 stays close to fp32.
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var reference = _dense.call(_input);
        foreach (var (name, model) in Variants().Skip(1))
        {
            var y = model.call(_input);
            if (!y.shape.SequenceEqual(reference.shape))
                throw new InvalidOperationException($"{name}: output shape [{string.Join(", ", y.shape)}]");
        }
        double error = (_int8.call(_input) - reference).abs().max().item<float>() / reference.abs().max().item<float>();
        if (error > 0.05)
            throw new InvalidOperationException($"DynamicInt8 deviates from fp32 by {error:P1} of the output range");
        foreach (var (_, model) in Variants())
            Run(model); // one-off initialisation (oneDNN kernels, TorchScript) before measuring
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var (_, model) in Variants())
            model.Dispose();
        _input.Dispose();
    }

    private IEnumerable<(string Name, nn.Module<Tensor, Tensor> Model)> Variants() => new[]
    {
        ("Dense fp32", _dense), ("DynamicInt8", _int8), ("Structured50", _structured),
        ("Unstructured50+Remove", _unstructured), ("Structured50+Int8", _structuredInt8),
    };

    private float Run(nn.Module<Tensor, Tensor> model)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return model.call(_input)[0, 0].item<float>();
    }

    [Benchmark(Baseline = true, Description = "Dense fp32")]
    public float Dense() => Run(_dense);

    [Benchmark(Description = "DynamicInt8")]
    public float DynamicInt8() => Run(_int8);

    [Benchmark(Description = "Structured50")]
    public float Structured50() => Run(_structured);

    [Benchmark(Description = "Unstructured50+Remove")]
    public float Unstructured50() => Run(_unstructured);

    [Benchmark(Description = "Structured50+Int8")]
    public float Structured50Int8() => Run(_structuredInt8);

    /// <summary>
    /// Load-robust cross-check: the five variants run in rounds of blocks (about 0.2 s of work each, the order rotated
    /// every round) in one process, so drift in machine load hits all alike; per-round ratios to the dense block of
    /// the same round, medians over rounds. Then the PyTorch peer (peer_quantize.py, if /usr/bin/python3 has torch),
    /// then this check again, so the peer is bracketed by two measurements of this project.
    /// Run: <c>dotnet run -c Release --project tests/ModelDsl.Benchmarks -- --optimization [rounds [threads]]</c>.
    /// </summary>
    public static void RunInterleaved(int rounds, int threads)
    {
        var b = new OptimizationBenchmarks { Threads = threads };
        b.Setup();
        Console.WriteLine($"Optimisation check: MLP {Hidden}x{Hidden}x{Hidden}x10, batch {Batch}, torch threads {get_num_threads()}, inference (no_grad), int8 kernel {Int8Gemm.Current}");
        b.Measure(rounds, "pass 1");
        RunPeer(rounds, threads);
        b.Measure(rounds, "pass 2");
        b.Cleanup();
    }

    private void Measure(int rounds, string label)
    {
        var variants = Variants().ToArray();
        var counts = variants.Select(v =>
        {
            var probe = Stopwatch.StartNew();
            int n = 0;
            while (probe.Elapsed.TotalMilliseconds < 100) { Run(v.Model); n++; }
            return Math.Max(1, (int)(n * 200 / probe.Elapsed.TotalMilliseconds));
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
                for (int k = 0; k < counts[i]; k++) Run(variants[i].Model);
                roundTimes[i] = sw.Elapsed.TotalMilliseconds / counts[i];
            }
            for (int i = 0; i < variants.Length; i++)
            {
                times[i].Add(roundTimes[i]);
                ratios[i].Add(roundTimes[0] / roundTimes[i]);
            }
        }

        Console.WriteLine($"{label}: {rounds} rounds; speed-up = dense time / variant time in the same round (median, IQR)");
        Console.WriteLine($"  {"variant",-24}{"median ms",11}{"speed-up",10}{"IQR",16}");
        for (int i = 0; i < variants.Length; i++)
        {
            var (q1, q3) = Quartiles(ratios[i]);
            Console.WriteLine($"  {variants[i].Name,-24}{Median(times[i]),11:F2}{Median(ratios[i]),9:F2}x{$"{q1:F2}-{q3:F2}",16}");
        }
    }

    private static void RunPeer(int rounds, int threads)
    {
        string? script = RepoFiles.FindUp(Path.Combine("tests", "ModelDsl.Benchmarks", "peer_quantize.py"));
        if (script is null || !File.Exists("/usr/bin/python3"))
        {
            Console.WriteLine("peer: skipped (peer_quantize.py or /usr/bin/python3 not found)");
            return;
        }
        var info = new ProcessStartInfo("/usr/bin/python3", $"\"{script}\" --rounds {rounds} --threads {threads}") { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(info)!;
        string output = process.StandardOutput.ReadToEnd();
        string error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Console.Write(process.ExitCode == 0 ? output : $"peer failed ({process.ExitCode}): {error}\n");
    }

    internal static double Median(List<double> values)
    {
        var s = values.OrderBy(v => v).ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }

    internal static (double Q1, double Q3) Quartiles(List<double> values)
    {
        var s = values.OrderBy(v => v).ToArray();
        return (s[(int)Math.Floor((s.Length - 1) * 0.25)], s[(int)Math.Ceiling((s.Length - 1) * 0.75)]);
    }
}
