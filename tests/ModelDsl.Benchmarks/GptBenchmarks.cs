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

/// <summary>
/// The same shape with a 256-position table: a one-id prompt and 256 generated ids fit its window, so generation never
/// slides the window (and the key/value cache is never rebuilt).
/// </summary>
[Model(Input = "B, T", InputType = DType.Int64)]
public partial class BenchGptLong
{
    [Embedding(65, 128)]                      public partial Embedding Tokens { get; }
    [PositionalEmbedding(256)]                public partial PositionalEmbedding Positions { get; }
    [TransformerBlock(Heads = 4, Repeat = 4)] public partial TransformerBlock Blocks { get; }
    [LayerNorm]                               public partial LayerNorm Norm { get; }
    [Linear(65, TiedTo = nameof(Tokens))]     public partial Linear Head { get; }
}

/// <summary>samples/CharGpt's LargeGpt (31.6M parameters, 64-position window), declared again here.</summary>
[Model(Input = "B, T", InputType = DType.Int64)]
public partial class BenchLargeGpt
{
    [Embedding(65, 512)]                       public partial Embedding Tokens { get; }
    [PositionalEmbedding(64)]                  public partial PositionalEmbedding Positions { get; }
    [TransformerBlock(Heads = 8, Repeat = 10)] public partial TransformerBlock Blocks { get; }
    [LayerNorm]                                public partial LayerNorm Norm { get; }
    [Linear(65, TiedTo = nameof(Tokens))]      public partial Linear Head { get; }
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
        Console.WriteLine($"GPT 0.8M, 2 threads: training {1024 / train * 1000:N0} tokens/s ({train:F1} ms per 16x64 step)");
        RunGeneration(gpt, Math.Max(3, rounds / 3));
    }

    /// <summary>
    /// Generation of <see cref="GptThroughputBenchmarks.Tokens"/> ids after a one-id prompt, with and without the
    /// key/value cache, fp32 and int8, on the sample's model (64-position window) and on the same shape with a
    /// 256-position window: the eight cases take turns in each round (the order rotating from round to round), and
    /// each figure is the median over the rounds, so the ratios come from one run under the same load.
    /// </summary>
    public static void RunGeneration(GptThroughputBenchmarks gpt, int rounds)
    {
        var cases = gpt.GenerationCases();
        var times = cases.Select(_ => new double[rounds]).ToArray();
        for (int r = 0; r < rounds; r++)
        {
            for (int j = 0; j < cases.Length; j++)
            {
                int i = (j + r) % cases.Length;
                times[i][r] = Time(() => cases[i].Run(), 1);
            }
            Console.WriteLine($"  round {r + 1}/{rounds} (ms): " + string.Join(", ", cases.Select((c, i) => $"{c.Name} {times[i][r]:F0}")));
        }
        var tokensPerSecond = times.Select(t => GptThroughputBenchmarks.Tokens / Median(t) * 1000).ToArray();
        double Rate(string name) => tokensPerSecond[Array.FindIndex(cases, c => c.Name == name)];

        Console.WriteLine($"generation, {GptThroughputBenchmarks.Tokens} ids after a 1-id prompt, torch threads: {get_num_threads()}, randomly initialised weights, " +
                          $"medians of {rounds} interleaved rounds (tokens/s):");
        foreach (var window in new[] { "window 64", "window 256" })
            foreach (var precision in new[] { "fp32", "int8" })
            {
                double uncached = Rate($"{window} {precision} uncached"), cached = Rate($"{window} {precision} cached");
                Console.WriteLine($"  {window,-10} {precision}: uncached {uncached,7:N0}, cached {cached,7:N0}, cached/uncached x{cached / uncached:F2}");
            }
        foreach (var window in new[] { "window 64", "window 256" })
            Console.WriteLine($"  {window,-10} int8/fp32: uncached x{Rate($"{window} int8 uncached") / Rate($"{window} fp32 uncached"):F2}, " +
                              $"cached x{Rate($"{window} int8 cached") / Rate($"{window} fp32 cached"):F2}");
    }

    /// <summary>
    /// <c>-- --large-gpt-generation [rounds [threads]]</c>: LargeGpt's shape (31.6M parameters, randomly initialised),
    /// <see cref="GptThroughputBenchmarks.Tokens"/> ids after a one-id prompt with the key/value cache, as
    /// <c>generate</c> runs it, fp32 against DynamicInt8 on every Linear, in interleaved rounds (order alternating).
    /// The first 63 steps use the cache (one row per Linear); past the 64-position window every step runs the whole
    /// window (64 rows), as the uncached path does.
    /// </summary>
    public static void RunLargeGeneration(int rounds, int threads)
    {
        set_num_threads(threads);
        manual_seed(5);
        var fp32 = new BenchLargeGpt();
        using (no_grad()) fp32.Tokens.weight!.normal_(0, 0.02);
        fp32.eval();
        var int8 = Quantize.Dynamic(fp32, QuantizeMode.DynamicInt8);
        long parameters = fp32.parameters().Sum(p => p.numel());
        long[] Generate(nn.Module<Tensor, Tensor> m) => GptThroughputBenchmarks.Generate(m, window: 64, cache: true);
        Generate(fp32);
        Generate(int8);
        var times = new[] { new double[rounds], new double[rounds] };
        for (int r = 0; r < rounds; r++)
        {
            for (int j = 0; j < 2; j++)
            {
                int i = (j + r) % 2;
                times[i][r] = Time(() => Generate(i == 0 ? fp32 : int8), 1);
            }
            Console.WriteLine($"  round {r + 1}/{rounds} (ms): fp32 {times[0][r]:F0}, int8 {times[1][r]:F0}");
        }
        double f = GptThroughputBenchmarks.Tokens / Median(times[0]) * 1000, q = GptThroughputBenchmarks.Tokens / Median(times[1]) * 1000;
        Console.WriteLine($"LargeGpt shape ({parameters:N0} parameters), {GptThroughputBenchmarks.Tokens} ids, window 64, cached, torch threads {get_num_threads()}, " +
                          $"int8 kernel {Int8Gemm.Current}, medians of {rounds} interleaved rounds: fp32 {f:N0} tokens/s, int8 {q:N0} tokens/s, int8/fp32 x{q / f:F2}");
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
/// 1024 / time), and sampling <see cref="Tokens"/> characters one at a time after a one-character prompt with a
/// 64-character window, fp32 and after DynamicInt8 on every Linear, with the key/value cache (what <c>generate</c>
/// does) and without it (every step recomputes the window; the baseline). tokens/s = <see cref="Tokens"/> / time.
/// </summary>
[MedianColumn]
public class GptThroughputBenchmarks
{
    /// <summary>Ids generated per measurement.</summary>
    public const int Tokens = 256;

    private BenchGpt model = null!;
    private BenchGptLong longModel = null!;
    private nn.Module<Tensor, Tensor> int8 = null!, longInt8 = null!;
    private OptimizerHelper optimizer = null!;
    private Tensor x = null!, y = null!;

    /// <summary>Torch's intra-op threads (2 unless a caller says otherwise).</summary>
    public int Threads { get; set; } = 2;

    [GlobalSetup]
    public void Setup()
    {
        set_num_threads(Threads);
        manual_seed(5);
        model = new BenchGpt();
        using (no_grad()) model.Tokens.weight!.normal_(0, 0.02);
        longModel = new BenchGptLong();
        using (no_grad()) longModel.Tokens.weight!.normal_(0, 0.02);
        optimizer = torch.optim.AdamW(model.parameters(), 1e-3);
        x = randint(0, 65, new long[] { 16, 64 }, dtype: ScalarType.Int64);
        y = randint(0, 65, new long[] { 16, 64 }, dtype: ScalarType.Int64);
        TrainStep();
        int8 = Quantize.Dynamic(model, QuantizeMode.DynamicInt8);
        longInt8 = Quantize.Dynamic(longModel, QuantizeMode.DynamicInt8);
        // The cache must not change what is drawn (fp32; int8 agrees to int8 error only, see GenerationSession).
        Console.WriteLine("checking that the cache does not change the ids drawn (fp32) ...");
        foreach (var (m, window) in new[] { ((nn.Module<Tensor, Tensor>)model, 64), (longModel, 256) })
        {
            var cached = Generate(m, window, true);
            var uncached = Generate(m, window, false);
            if (!cached.SequenceEqual(uncached))
                throw new InvalidOperationException($"window {window}: the cached and the uncached path drew different ids");
        }
        foreach (var c in GenerationCases()) c.Run();
    }

    internal static long[] Generate(nn.Module<Tensor, Tensor> m, int window, bool cache) =>
        TextGeneration.Sample(m, new long[] { 0 }, Tokens, window, 1.0, 0, 1, cache).ToArray();

    /// <summary>The eight generation cases: window 64/256 × fp32/int8 × uncached/cached.</summary>
    public (string Name, Func<long[]> Run)[] GenerationCases() => new (string, Func<long[]>)[]
    {
        ("window 64 fp32 uncached", () => Generate(model, 64, false)),
        ("window 64 fp32 cached", () => Generate(model, 64, true)),
        ("window 64 int8 uncached", () => Generate(int8, 64, false)),
        ("window 64 int8 cached", () => Generate(int8, 64, true)),
        ("window 256 fp32 uncached", () => Generate(longModel, 256, false)),
        ("window 256 fp32 cached", () => Generate(longModel, 256, true)),
        ("window 256 int8 uncached", () => Generate(longInt8, 256, false)),
        ("window 256 int8 cached", () => Generate(longInt8, 256, true)),
    };

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

    [Benchmark(Baseline = true, OperationsPerInvoke = Tokens)]
    public long GenerateFp32Uncached() => Generate(model, 64, false)[^1];

    [Benchmark(OperationsPerInvoke = Tokens)]
    public long GenerateFp32() => Generate(model, 64, true)[^1];

    [Benchmark(OperationsPerInvoke = Tokens)]
    public long GenerateInt8Uncached() => Generate(int8, 64, false)[^1];

    [Benchmark(OperationsPerInvoke = Tokens)]
    public long GenerateInt8() => Generate(int8, 64, true)[^1];
}
