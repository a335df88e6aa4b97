using System.IO;
using System.Collections.Generic;
using ModelDsl.Runtime.Training;
using TorchSharp.Modules;
using Xunit.Abstractions;

namespace ModelDsl.Runtime.Tests;

// GPT models past this machine, declared with CharGpt's layer kinds, whose memory plan the compiler computes (they are
// never built: 1.5B parameters is 6 GB of fp32 weights). GPT-2 XL's shape (48 blocks of 1,600, 25 heads), and a 7.5B
// model at ZeRO's Figure 1 size (36 blocks of 4,096, 32 heads); GPT-2's vocabulary and 1,024 positions, a tied head.

[Model(Input = "B, T", InputType = DType.Int64)]
[Train(Loss.CrossEntropy, Optimizer.Adam, BatchSize = 1, SequenceLength = 1024)]
public partial class Gpt1_5B
{
    [Embedding(50257, 1600)] public partial Embedding Tokens { get; }
    [PositionalEmbedding(1024)] public partial PositionalEmbedding Positions { get; }
    [TransformerBlock(Heads = 25, Repeat = 48)] public partial TransformerBlock Blocks { get; }
    [LayerNorm] public partial LayerNorm Norm { get; }
    [Linear(50257, TiedTo = nameof(Tokens))] public partial Linear Head { get; }
}

[Model(Input = "B, T", InputType = DType.Int64)]
[Train(Loss.CrossEntropy, Optimizer.Adam, BatchSize = 1, SequenceLength = 1024)]
public partial class Gpt7_5B
{
    [Embedding(50257, 4096)] public partial Embedding Tokens { get; }
    [PositionalEmbedding(1024)] public partial PositionalEmbedding Positions { get; }
    [TransformerBlock(Heads = 32, Repeat = 36)] public partial TransformerBlock Blocks { get; }
    [LayerNorm] public partial LayerNorm Norm { get; }
    [Linear(50257, TiedTo = nameof(Tokens))] public partial Linear Head { get; }
}

/// <summary>
/// The compiler's memory plan for the GPT models above at world sizes 8, 64 and 1,024 and each shard level, in bf16
/// mixed precision with Adam (ZeRO's 2Ψ + 2Ψ + 12Ψ), checked against ZeRO's formulas; docs/memory.md holds the table
/// this test prints, and the test checks that it does.
/// </summary>
public class GptMemoryPlanTests(ITestOutputHelper output)
{
    private static readonly int[] WorldSizes = { 8, 64, 1024 };

    private static (string Name, MemoryModel Model, long C, long Blocks)[] Models() =>
    [
        ("GPT 1.5B", Gpt1_5B.Plan.Memory!, 1600, 48),
        ("GPT 7.5B", Gpt7_5B.Plan.Memory!, 4096, 36),
    ];

    [Fact]
    public void ParameterCount_IsGpt2sFormula()
    {
        foreach (var (name, model, c, blocks) in Models())
        {
            // Per block 12C² + 13C; token table V·C, positions 1024·C, final LayerNorm 2C, the tied head's bias V.
            long expected = blocks * (12 * c * c + 13 * c) + 50257 * c + 1024 * c + 2 * c + 50257;
            Assert.True(expected == model.Parameters, $"{name}: {model.Parameters} vs {expected}");
        }
        Assert.Equal(Gpt1_5B.Summary.TotalParameters, Gpt1_5B.Plan.Memory!.Parameters);
    }

    [Fact]
    public void ModelStateByShardLevel_IsZerosFormula()
    {
        foreach (var (name, model, _, _) in Models())
        {
            long psi = model.Parameters;
            foreach (int n in WorldSizes)
            {
                var plan = MemoryPlan.Levels.Select(level => MemoryPlan.For(model, Optimizer.Adam, 0, MemoryPrecision.BFloat16, level, n, 1)).ToArray();
                long[] shares = MemoryPlan.Shares(model.ParameterTensors, n);
                long share = shares.Max();
                // ZeroRedundancyOptimizer's whole-tensor partition: every element owned once, no rank below the flat Ψ/N.
                Assert.Equal(psi, shares.Sum());
                Assert.True(share >= MemoryPlan.FlatShare(psi, n));
                // DDP 2Ψ + 2Ψ + 12Ψ; stage 1 2Ψ + 2Ψ + 12Ψ/N; stage 2 2Ψ + (2 + 12)Ψ/N; stage 3 16Ψ/N, Ψ/N the largest rank's share.
                Assert.Equal(16 * psi, plan[0].ModelState);
                Assert.Equal((2 * psi, 2 * psi, 12 * share), (plan[1].Parameters, plan[1].Gradients, plan[1].OptimizerState));
                Assert.Equal((2 * psi, 2 * share, 12 * share), (plan[2].Parameters, plan[2].Gradients, plan[2].OptimizerState));
                Assert.Equal(16 * share, plan[3].ModelState);
                output.WriteLine($"{name} N={n}: " + string.Join(" / ", plan.Select(p => (p.ModelState / 1e9).ToString("N1"))));
            }
        }
    }

    [Fact]
    public void DocsMemoryMd_HoldsTheCompilersTable()
    {
        string docs = File.ReadAllText(Path.Combine(DigitsProgram.RepoRoot(), "docs", "memory.md"));
        string table = Table();
        output.WriteLine(table);
        Assert.Contains(table, docs.Replace("\r\n", "\n"));
    }

    /// <summary>
    /// The docs' table: model state per device in GB (10⁹ bytes) at each world size and shard level — the compiler's plan,
    /// under the runtime's whole-tensor partition, then ZeRO's formulas with the flat Ψ/N on the compiler's Ψ — and the
    /// activations of one 1,024-token sequence.
    /// </summary>
    internal static string Table()
    {
        static string G(long bytes) => (bytes / 1e9).ToString("N1", System.Globalization.CultureInfo.InvariantCulture);
        var lines = new List<string>
        {
            "| model | Ψ | N | DDP | stage 1 | stage 2 | stage 3 | flat Ψ/N: stage 1 | stage 2 | stage 3 | activations (1 × 1,024 tokens) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        };
        foreach (var (name, model, _, _) in Models())
            foreach (int n in WorldSizes)
            {
                var plan = MemoryPlan.Levels.Select(level => MemoryPlan.For(model, Optimizer.Adam, 0, MemoryPrecision.BFloat16, level, n, 1)).ToArray();
                long psi = model.Parameters, flat = MemoryPlan.FlatShare(psi, n);
                lines.Add($"| {name} | {psi:N0} | {n:N0} | {G(plan[0].ModelState)} | {G(plan[1].ModelState)} | {G(plan[2].ModelState)} | " +
                          $"{G(plan[3].ModelState)} | {G(4 * psi + 12 * flat)} | {G(2 * psi + 14 * flat)} | {G(16 * flat)} | {G(plan[0].Activations)} |");
            }
        return string.Join("\n", lines) + "\n";
    }
}
