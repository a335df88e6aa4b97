using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.Intrinsics.X86;
using ModelDsl.Runtime.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelDsl.Benchmarks;

/// <summary>
/// The int8 kernel of <see cref="DynamicQuantizedLinear"/>, each dispatch path forced in turn, against float32 on the same
/// layers: OptimizationBenchmarks' 4096-wide MLP at batch 64, and the Digits CNN's Hidden layer, Linear(1024, 128), at
/// batch 64 and 1; torch threads 1 and 2. All variants of one workload run in rounds of blocks (about 0.1 s of work each,
/// the order rotated every round) in one process, so drift in machine load hits all alike; speed-up = fp32 time / variant
/// time in the same round, medians over rounds. Then PyTorch 1.13's own quantize_dynamic (peer_quantize.py; int8 only,
/// since Debian's fp32 is generic BLAS) on the onednn and fbgemm engines, same layers, same threads.
/// Run: <c>dotnet run -c Release --project tests/ModelDsl.Benchmarks -- --int8-kernels [rounds]</c>.
/// </summary>
public static class Int8KernelBenchmarks
{
    public static void Run(int rounds)
    {
        Console.WriteLine($"int8 kernels: best on this CPU {Int8Gemm.Best}; Avx2 {Avx2.IsSupported}, AvxVnni {AvxVnni.IsSupported}, Avx512BW {Avx512BW.IsSupported}");
        Console.WriteLine($"CPU: {CpuModel()}");
        var kernels = new[] { Int8Kernel.AvxVnni, Int8Kernel.Avx2, Int8Kernel.Torch }.Where(Int8Gemm.IsSupported).ToArray();
        foreach (int threads in new[] { 1, 2 })
        {
            set_num_threads(threads);
            foreach (var (name, model, input) in Workloads())
            {
                var int8 = Quantize.Dynamic(model, QuantizeMode.DynamicInt8);
                var variants = new List<(string Name, Action Run)> { ("fp32", () => Call(model, input)) };
                foreach (var kernel in kernels)
                    variants.Add(($"int8 [{Label(kernel)}]", () => Forced(kernel, () => Call(int8, input))));
                Measure($"{name}, torch threads {get_num_threads()}", variants, rounds);
                int8.Dispose();
                model.Dispose();
                input.Dispose();
            }
            Peer(rounds, threads);
        }
    }

    /// <summary>
    /// One row per call, what cached generation gives each Linear: CharGpt's five Linear shapes (128 → 384, 128 → 128,
    /// 128 → 512, 512 → 128, 128 → 65) at batch 1, fp32 against DynamicInt8 on each kernel, 1 torch thread; then the
    /// int8 product alone (<see cref="Int8Gemm"/> on the same operands), which is what is left once the per-call work
    /// around it is gone. Run: <c>-- --int8-rows [rounds]</c>.
    /// </summary>
    public static void RunRows(int rounds)
    {
        Console.WriteLine($"int8 one-row calls: best on this CPU {Int8Gemm.Best}; CPU: {CpuModel()}");
        set_num_threads(1);
        var kernels = new[] { Int8Kernel.AvxVnni, Int8Kernel.Avx2 }.Where(Int8Gemm.IsSupported).ToArray();
        foreach (var (inputs, outputs) in new[] { (128, 384), (128, 128), (128, 512), (512, 128), (128, 65) })
        {
            manual_seed(1);
            var linear = nn.Linear(inputs, outputs);
            linear.eval();
            var int8 = Quantize.Dynamic(linear, QuantizeMode.DynamicInt8);
            using var x = randn(1, inputs);
            var a = new byte[inputs];
            var w = new sbyte[inputs * outputs];
            var random = new Random(1);
            for (int i = 0; i < a.Length; i++) a[i] = (byte)random.Next(0, 128);
            for (int i = 0; i < w.Length; i++) w[i] = (sbyte)random.Next(-128, 128);
            var y = new float[outputs];
            var variants = new List<(string Name, Action Run)> { ("fp32 Linear", () => Call(linear, x)) };
            foreach (var kernel in kernels)
                variants.Add(($"int8 [{Label(kernel)}]", () => Forced(kernel, () => Call(int8, x))));
            foreach (var kernel in kernels)
                variants.Add(($"product only [{kernel}]", () => Int8Gemm.Linear(a, w, 1, outputs, inputs, 5, 1e-3f, default, y, kernel, 1)));
            Measure($"Linear({inputs}, {outputs}), 1 row, torch threads 1", variants, rounds);
            int8.Dispose();
            linear.Dispose();
        }
        FullRange(rounds);
    }

    /// <summary>
    /// Static int8's product on an AVX2-only CPU when the quantised input passes 127: Linear(1024, 128) at batch 64 with
    /// per-channel scales, bytes in [0, 255] — the split step (Avx2FullRange) against the scalar kernel such calls took
    /// before, VNNI, and the plain Avx2 step on bytes ≤ 127 (what it costs when no byte passes 127); fp32 Linear first.
    /// </summary>
    private static void FullRange(int rounds)
    {
        const int rows = 64, k = 1024, columns = 128;
        manual_seed(1);
        var linear = nn.Linear(k, columns);
        linear.eval();
        using var x = randn(rows, k);
        var random = new Random(3);
        var full = new byte[rows * k];
        var low = new byte[rows * k];
        var w = new sbyte[columns * k];
        for (int i = 0; i < full.Length; i++) { full[i] = (byte)random.Next(0, 256); low[i] = (byte)(full[i] & 127); }
        for (int i = 0; i < w.Length; i++) w[i] = (sbyte)random.Next(-128, 128);
        var scales = Enumerable.Repeat(1e-4f, columns).ToArray();
        var y = new float[rows * columns];
        var variants = new List<(string Name, Action Run)> { ("fp32 Linear", () => Call(linear, x)) };
        foreach (var (name, kernel, a) in new[] { ("bytes 0..255", Int8Kernel.Scalar, full), ("bytes 0..255", Int8Kernel.Avx2FullRange, full),
                     ("bytes 0..255", Int8Kernel.AvxVnni, full), ("bytes 0..127", Int8Kernel.Avx2, low) })
            if (Int8Gemm.IsSupported(kernel))
                variants.Add(($"{kernel}, {name}", () => Int8Gemm.Linear(a, w, rows, columns, k, 7, scales, default, y, kernel, 1)));
        Measure($"static int8 product 64x1024 by 128, torch threads 1", variants, rounds);
        linear.Dispose();
    }

    private static string Label(Int8Kernel kernel) => kernel switch
    {
        Int8Kernel.AvxVnni => "AvxVnni vpdpbusd",
        Int8Kernel.Avx2 => "Avx2 vpmaddubsw",
        Int8Kernel.Torch => "torch._int_mm",
        _ => kernel.ToString(),
    };

    private static IEnumerable<(string Name, nn.Module<Tensor, Tensor> Model, Tensor Input)> Workloads()
    {
        var mlp = OptimizationBenchmarks.BuildMlp();
        manual_seed(42);
        yield return ("MLP 4096x4096x4096x10, batch 64", mlp, randn(64, 4096));
        foreach (int batch in new[] { 64, 1 })
        {
            manual_seed(1);
            var hidden = nn.Linear(1024, 128);
            hidden.eval();
            manual_seed(42);
            yield return ($"Linear(1024, 128) (Digits Hidden), batch {batch}", hidden, randn(batch, 1024));
        }
    }

    private static void Forced(Int8Kernel kernel, Action action)
    {
        Int8Gemm.Forced = kernel;
        try { action(); }
        finally { Int8Gemm.Forced = null; }
    }

    private static void Call(nn.Module<Tensor, Tensor> model, Tensor input)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        model.call(input);
    }

    private static void Measure(string label, List<(string Name, Action Run)> variants, int rounds)
    {
        foreach (var (_, run) in variants) { run(); run(); } // one-off initialisation (oneDNN, TorchScript, JIT)
        var counts = variants.Select(v =>
        {
            var probe = Stopwatch.StartNew();
            int n = 0;
            while (probe.Elapsed.TotalMilliseconds < 50) { v.Run(); n++; }
            return Math.Max(1, (int)(n * 100 / probe.Elapsed.TotalMilliseconds));
        }).ToArray();
        var times = variants.Select(_ => new List<double>()).ToArray();
        var ratios = variants.Select(_ => new List<double>()).ToArray();
        for (int r = 0; r < rounds; r++)
        {
            var roundTimes = new double[variants.Count];
            for (int j = 0; j < variants.Count; j++)
            {
                int i = (j + r) % variants.Count; // rotate the order every round
                var sw = Stopwatch.StartNew();
                for (int k = 0; k < counts[i]; k++) variants[i].Run();
                roundTimes[i] = sw.Elapsed.TotalMilliseconds / counts[i];
            }
            for (int i = 0; i < variants.Count; i++)
            {
                times[i].Add(roundTimes[i]);
                ratios[i].Add(roundTimes[0] / roundTimes[i]);
            }
        }
        Console.WriteLine($"{label}: {rounds} rounds; speed-up = fp32 time / variant time in the same round (median, IQR)");
        Console.WriteLine($"  {"variant",-26}{"median ms",11}{"speed-up",10}{"IQR",16}");
        for (int i = 0; i < variants.Count; i++)
        {
            var (q1, q3) = OptimizationBenchmarks.Quartiles(ratios[i]);
            Console.WriteLine($"  {variants[i].Name,-26}{OptimizationBenchmarks.Median(times[i]),11:F3}{OptimizationBenchmarks.Median(ratios[i]),9:F2}x{$"{q1:F2}-{q3:F2}",16}");
        }
    }

    private static void Peer(int rounds, int threads)
    {
        string? script = RepoFiles.FindUp(Path.Combine("tests", "ModelDsl.Benchmarks", "peer_quantize.py"));
        if (script is null || !File.Exists("/usr/bin/python3"))
        {
            Console.WriteLine("peer: skipped (peer_quantize.py or /usr/bin/python3 not found)");
            return;
        }
        var info = new ProcessStartInfo("/usr/bin/python3",
            $"\"{script}\" --rounds {rounds} --threads {threads} --engines onednn,fbgemm --workloads mlp,hidden64,hidden1 --int8-only")
        { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(info)!;
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        Console.Write(process.ExitCode == 0 ? output : $"peer failed ({process.ExitCode}): {error.Result}\n");
    }

    private static string CpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            return line is null ? "unknown" : line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { return "unknown"; }
    }
}
