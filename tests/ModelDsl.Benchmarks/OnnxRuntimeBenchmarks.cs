using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using Microsoft.ML.OnnxRuntime;
using ModelDsl.Runtime.Onnx;
using ModelDsl.Runtime.Quantization;
using TorchSharp;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace ModelDsl.Benchmarks;

/// <summary>A CharGpt-shaped model (the sample's ShakespeareGpt layers) for the ONNX Runtime comparison.</summary>
[Model(Input = "B, T", InputType = DType.Int64)]
public partial class OnnxBenchGpt
{
    [Embedding(65, 128)]                      public partial TorchSharp.Modules.Embedding Tokens { get; }
    [PositionalEmbedding(64)]                 public partial PositionalEmbedding Positions { get; }
    [TransformerBlock(Heads = 4, Repeat = 4)] public partial TransformerBlock Blocks { get; }
    [LayerNorm]                               public partial TorchSharp.Modules.LayerNorm Norm { get; }
    [Linear(65, TiedTo = nameof(Tokens))]     public partial TorchSharp.Modules.Linear Head { get; }
}

/// <summary>
/// ONNX Runtime (<c>Microsoft.ML.OnnxRuntime</c>, CPU provider, all graph optimisations) on the files
/// <see cref="OnnxExport"/> writes, beside our runtime on the same model: the Digits CNN (<see cref="GeneratedCnn"/>)
/// and a CharGpt-shaped model (64 tokens), at batch 1 and 64, fp32 and DynamicInt8 (ORT: our reduce_range graph and
/// ONNX's DynamicQuantizeLinear). Interleaved rounds in one process, ratios to our fp32 in the same round.
/// Run: <c>dotnet run -c Release --project tests/ModelDsl.Benchmarks -- --onnx [rounds [threads]]</c>.
/// </summary>
public static class OnnxRuntimeBenchmarks
{
    private sealed class Variant(string name, Func<float> run) : IDisposable
    {
        public string Name { get; } = name;
        public Func<float> Run { get; } = run;
        public List<IDisposable> Owned { get; } = new();
        public void Dispose() { foreach (var d in Owned) d.Dispose(); }
    }

    public static void Run(int rounds, int threads)
    {
        set_num_threads(threads);
        Console.WriteLine($"ONNX Runtime {OrtEnv.Instance().GetVersionString()} vs ModelDsl (TorchSharp) inference, {threads} threads each, {rounds} interleaved rounds; CPU: {Cpu()}");
        manual_seed(1);
        using var cnn = new GeneratedCnn();
        Randomise(cnn);
        using var cnnInt8 = Quantize.Dynamic(cnn, QuantizeMode.DynamicInt8);
        manual_seed(2);
        using var gpt = new OnnxBenchGpt();
        gpt.eval();
        using var gptInt8 = Quantize.Dynamic(gpt, QuantizeMode.DynamicInt8);

        foreach (int batch in new[] { 1, 64 })
        {
            manual_seed(3);
            Measure($"Digits CNN, batch {batch}", rounds, threads, cnn, cnnInt8, GeneratedCnn.Signature, rand(batch, 1, 8, 8));
        }
        foreach (int batch in new[] { 1, 64 })
        {
            manual_seed(4);
            Measure($"CharGpt-shaped (4 blocks of 128, 64 tokens), batch {batch}", rounds, threads, gpt, gptInt8, OnnxBenchGpt.Signature, randint(0, 65, new long[] { batch, 64 }));
        }
    }

    private static void Randomise(nn.Module<Tensor, Tensor> model)
    {
        using var noGrad = no_grad();
        foreach (var norm in model.modules().OfType<TorchSharp.Modules.BatchNorm>())
        {
            norm.running_mean!.normal_(0, 0.5);
            norm.running_var!.uniform_(0.5, 2.0);
        }
        model.eval();
    }

    private static void Measure(string title, int rounds, int threads, nn.Module<Tensor, Tensor> fp32, nn.Module<Tensor, Tensor> int8,
        Runtime.Inference.ModelSignature signature, Tensor input)
    {
        var variants = new[]
        {
            Ours("ModelDsl fp32", fp32, input),
            Ort("ORT fp32", OnnxExport.ToBytes(fp32, signature), input, threads),
            Ours("ModelDsl int8", int8, input),
            Ort("ORT int8 (reduce_range graph)", OnnxExport.ToBytes(int8, signature), input, threads),
            Ort("ORT int8 (DynamicQuantizeLinear)", OnnxExport.ToBytes(int8, signature, OnnxInt8Activations.DynamicQuantizeLinear), input, threads),
        };
        try
        {
            foreach (var v in variants) v.Run(); // first-call initialisation before measuring
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
                var roundTimes = new double[variants.Length];
                for (int j = 0; j < variants.Length; j++)
                {
                    int i = (j + r) % variants.Length;
                    var sw = Stopwatch.StartNew();
                    for (int k = 0; k < counts[i]; k++) variants[i].Run();
                    roundTimes[i] = sw.Elapsed.TotalMilliseconds / counts[i];
                }
                for (int i = 0; i < variants.Length; i++)
                {
                    times[i].Add(roundTimes[i]);
                    ratios[i].Add(roundTimes[0] / roundTimes[i]);
                }
            }
            Console.WriteLine($"{title}: median ms per call; speed-up = our fp32 time / variant time in the same round (median)");
            for (int i = 0; i < variants.Length; i++)
                Console.WriteLine($"  {variants[i].Name,-34}{Median(times[i]),10:F3} ms{Median(ratios[i]),8:F2}x");
        }
        finally
        {
            foreach (var v in variants) v.Dispose();
        }
    }

    private static Variant Ours(string name, nn.Module<Tensor, Tensor> model, Tensor input) => new(name, () =>
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return model.call(input).view(-1)[0].item<float>();
    });

    private static Variant Ort(string name, byte[] model, Tensor input, int threads)
    {
        var options = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        var session = new InferenceSession(model, options);
        OrtValue value = input.dtype == ScalarType.Int64
            ? OrtValue.CreateTensorValueFromMemory(input.data<long>().ToArray(), input.shape)
            : OrtValue.CreateTensorValueFromMemory(input.data<float>().ToArray(), input.shape);
        var names = new[] { OnnxExport.InputName };
        var outputs = new[] { OnnxExport.OutputName };
        var inputs = new[] { value };
        var runOptions = new RunOptions();
        var variant = new Variant(name, () =>
        {
            using var results = session.Run(runOptions, names, inputs, outputs);
            return results[0].GetTensorDataAsSpan<float>()[0];
        });
        variant.Owned.AddRange(new IDisposable[] { runOptions, value, session, options });
        return variant;
    }

    private static string Cpu()
    {
        try
        {
            var model = System.IO.File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            return model?.Split(':', 2)[1].Trim() ?? "unknown";
        }
        catch (System.IO.IOException) { return "unknown"; }
    }

    private static double Median(List<double> values)
    {
        var s = values.OrderBy(v => v).ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }
}
