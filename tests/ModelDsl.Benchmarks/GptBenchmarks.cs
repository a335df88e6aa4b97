using System;
using System.Linq;
using BenchmarkDotNet.Attributes;
using ModelDsl.Runtime.Inference;
using ModelDsl.Runtime.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Benchmarks;

/// <summary>The CharGpt sample's model (samples/CharGpt), declared again here so the benchmarks need no sample project.</summary>
[Model(Input = "B, T", InputType = DType.Int64)]
public partial class BenchGpt
{
    [Embedding(65, 128)]                      public partial Embedding Tokens { get; }
    [PositionalEmbedding(64)]                 public partial PositionalEmbedding Positions { get; }
    [TransformerBlock(Heads = 4, Repeat = 4)] public partial TransformerBlock Blocks { get; }
    [LayerNorm]                               public partial LayerNorm Norm { get; }
    [Linear(65, TiedTo = nameof(Tokens))]     public partial Linear Head { get; }
}

/// <summary>One of the sample's Transformer blocks alone, as the generator builds it.</summary>
[Model(Input = "B, 64, 128")]
public partial class GeneratedGptBlock
{
    [TransformerBlock(Heads = 4)] public partial TransformerBlock Block { get; }
}

/// <summary>
/// The same pre-LayerNorm block written by hand the usual TorchSharp way: typed fields, fused q/k/v projection,
/// <c>scaled_dot_product_attention</c>, GELU MLP, residuals.
/// </summary>
public sealed class HandWrittenGptBlock : nn.Module<Tensor, Tensor>
{
    // Declared in the generated layer's order, so RegisterComponents lists the parameters in the same order.
    private readonly LayerNorm norm1;
    private readonly Linear inProj, outProj;
    private readonly LayerNorm norm2;
    private readonly Linear linear1, linear2;
    private const long C = 128, Heads = 4;

    public HandWrittenGptBlock() : base(nameof(HandWrittenGptBlock))
    {
        norm1 = nn.LayerNorm(C);
        inProj = nn.Linear(C, 3 * C);
        outProj = nn.Linear(C, C);
        norm2 = nn.LayerNorm(C);
        linear1 = nn.Linear(C, 4 * C);
        linear2 = nn.Linear(4 * C, C);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], t = x.shape[1];
        var qkv = inProj.forward(norm1.forward(x)).view(b, t, 3, Heads, C / Heads).permute(2, 0, 3, 1, 4);
        var y = nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_casual: true);
        x = x + outProj.forward(y.transpose(1, 2).reshape(b, t, C));
        return x + linear2.forward(nn.functional.gelu(linear1.forward(norm2.forward(x))));
    }
}

/// <summary>
/// Forward + backward of one Transformer block, (16, 64, 128), generated vs hand-written (the baseline): the Ratio
/// column is generated / hand-written (target: at most 1.02). Both hold the same weights.
/// </summary>
[MedianColumn]
public class GptBlockBenchmarks
{
    private nn.Module<Tensor, Tensor> handWritten = null!, generated = null!;
    private Tensor input = null!;

    [GlobalSetup]
    public void Setup()
    {
        set_num_threads(1);
        manual_seed(3);
        input = randn(16, 64, 128);
        handWritten = new HandWrittenGptBlock();
        generated = new GeneratedGptBlock();
        var from = generated.parameters().ToArray();
        var to = handWritten.parameters().ToArray();
        if (from.Length != to.Length) throw new InvalidOperationException($"{from.Length} generated parameters, {to.Length} by hand");
        using (no_grad())
            for (int i = 0; i < from.Length; i++) to[i].copy_(from[i]);
        using var check = NewDisposeScope();
        if (!generated.forward(input).allclose(handWritten.forward(input), 1e-5, 1e-5))
            throw new InvalidOperationException("the generated and the hand-written block disagree");
        Step(handWritten);
        Step(generated);
    }

    private void Step(nn.Module<Tensor, Tensor> model)
    {
        using var scope = NewDisposeScope();
        model.zero_grad();
        model.forward(input).square().mean().backward();
    }

    [Benchmark(Baseline = true)]
    public void HandWritten() => Step(handWritten);

    [Benchmark]
    public void Generated() => Step(generated);

    /// <summary>
    /// <c>-- --gpt [rounds]</c>: the same comparison in interleaved rounds (hand-written, generated, hand-written, …),
    /// which a machine shared with other work disturbs far less than two sequential BenchmarkDotNet runs; then the
    /// throughput figures. Prints medians and the ratio.
    /// </summary>
    public static void RunInterleaved(int rounds)
    {
        var bench = new GptBlockBenchmarks();
        bench.Setup();
        var hand = new double[rounds];
        var gen = new double[rounds];
        for (int r = 0; r < rounds; r++)
        {
            hand[r] = Time(bench.HandWritten, 10);
            gen[r] = Time(bench.Generated, 10);
        }
        double h = Median(hand), g = Median(gen);
        Console.WriteLine($"block fwd+bwd (16x64x128, 1 thread): hand-written {h:F2} ms, generated {g:F2} ms, ratio {g / h:F3} ({rounds} interleaved rounds of 10)");

        var gpt = new GptThroughputBenchmarks();
        gpt.Setup();
        double train = Median(Enumerable.Range(0, Math.Max(3, rounds / 3)).Select(_ => Time(gpt.TrainStep, 3)).ToArray());
        double fp32 = Median(Enumerable.Range(0, Math.Max(3, rounds / 3)).Select(_ => Time(() => gpt.GenerateFp32(), 1)).ToArray());
        double int8 = Median(Enumerable.Range(0, Math.Max(3, rounds / 3)).Select(_ => Time(() => gpt.GenerateInt8(), 1)).ToArray());
        Console.WriteLine($"GPT 0.8M, 2 threads: training {1024 / train * 1000:N0} tokens/s ({train:F1} ms per 16x64 step); " +
                          $"generation fp32 {64 / fp32 * 1000:N0} tokens/s, int8 {64 / int8 * 1000:N0} tokens/s (x{fp32 / int8:F2})");
    }

    private static double Time(Action action, int repeats)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < repeats; i++) action();
        return clock.Elapsed.TotalMilliseconds / repeats;
    }

    private static double Median(double[] values)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        return sorted[sorted.Length / 2];
    }
}

/// <summary>
/// The sample's 0.8M-parameter GPT on 2 threads: one AdamW training step at batch 16 × 64 characters (tokens/s =
/// 1024 / time), and sampling 64 characters one at a time with a 64-character context, fp32 (the baseline) and
/// after DynamicInt8 on every Linear (tokens/s = 64 / time).
/// </summary>
[MedianColumn]
public class GptThroughputBenchmarks
{
    private BenchGpt model = null!;
    private nn.Module<Tensor, Tensor> int8 = null!;
    private OptimizerHelper optimizer = null!;
    private Tensor x = null!, y = null!;

    [GlobalSetup]
    public void Setup()
    {
        set_num_threads(2);
        manual_seed(5);
        model = new BenchGpt();
        using (no_grad()) model.Tokens.weight!.normal_(0, 0.02);
        optimizer = torch.optim.AdamW(model.parameters(), 1e-3);
        x = randint(0, 65, new long[] { 16, 64 }, dtype: ScalarType.Int64);
        y = randint(0, 65, new long[] { 16, 64 }, dtype: ScalarType.Int64);
        int8 = Quantize.Dynamic(model, QuantizeMode.DynamicInt8);
        TrainStep();
        GenerateFp32();
        GenerateInt8();
    }

    [Benchmark(OperationsPerInvoke = 16 * 64)]
    public void TrainStep()
    {
        using var scope = NewDisposeScope();
        model.train();
        optimizer.zero_grad();
        nn.functional.cross_entropy(model.call(x).flatten(0, 1), y.flatten()).backward();
        nn.utils.clip_grad_norm_(model.parameters(), 1.0);
        optimizer.step();
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = 64)]
    public long GenerateFp32() => TextGeneration.Sample(model, new long[] { 0 }, 64, 64, 1.0, 0, 1).Last();

    [Benchmark(OperationsPerInvoke = 64)]
    public long GenerateInt8() => TextGeneration.Sample(int8, new long[] { 0 }, 64, 64, 1.0, 0, 1).Last();
}
