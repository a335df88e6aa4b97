using Microsoft.CodeAnalysis;

namespace ModelDsl.Generators.Tests;

/// <summary>The compiler's per-rank memory plan: MD0430 by id and span, its fix, and the plan in the generated trainer.</summary>
public class MemoryDiagnosticTests
{
    // Four 2048 x 2048 Linear layers and a Linear(1): Ψ = 4 · (2048² + 2048) + 2049 = 16,787,457; Adam in fp32 keeps 16
    // bytes per parameter (256.2 MiB with the activations unsharded). At 4 ranks the largest share is rank 0's: a
    // weight, a bias and Out's weight, 4,198,400 elements; stage 1 keeps 8Ψ + 8 · 4,198,400 bytes (160.1 MiB) and
    // stage 2 4Ψ + 12 · 4,198,400 (112.1 MiB); activations: 4 · 2048 + 1 floats per sample.
    private const string Wide = """
        {
            [Linear(2048)] public partial Linear L1 { get; }
            [Linear(2048)] public partial Linear L2 { get; }
            [Linear(2048)] public partial Linear L3 { get; }
            [Linear(2048)] public partial Linear L4 { get; }
            [Linear(1)]    public partial Linear Out { get; }
        }
        """;

    private static GeneratorRun Verify(string train, string parallel, string layers = Wide, string input = "B, 2048") =>
        Markup.Verify($"[Model(Input = \"{input}\")]\n[Train({train})]\n{parallel}\npublic partial class M\n{layers}");

    [Fact]
    public void PlanAboveTheBudget_IsMD0430_OnTheBudget_NamingTheLargestTermAndTheShardLevelThatFits()
    {
        var run = Verify("Loss.MSE, Optimizer.Adam, BatchSize = 1, {|MD0430:MemoryBudgetMB = 150|}", "[Parallel(ParallelMode.Sync, WorldSize = 4)]");
        var error = Assert.Single(run.ModelDiagnostics);
        Assert.Equal(DiagnosticSeverity.Error, error.Severity);
        string message = error.GetMessage();
        Assert.Contains("The per-rank memory plan of 'M' is 256.2 MiB (Adam, fp32, batch 1 per rank, 4 ranks", message);
        Assert.Contains("above MemoryBudgetMB = 150: the largest term is optimizer state, 128.1 MiB", message);
        // Stage 1 (160.1 MiB) does not fit; stage 2 does.
        Assert.EndsWith("Shard = ShardLevel.Gradients would make it 112.1 MiB", message);
    }

    [Fact]
    public void PlanWithinTheBudget_GoesIntoThePlan_WithItsTableByShardLevel()
    {
        var run = Verify("Loss.MSE, Optimizer.Adam, BatchSize = 1, MemoryBudgetMB = 150", "[Parallel(ParallelMode.Sync, WorldSize = 4, Shard = ShardLevel.Gradients)]");
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        var source = run.Source("M.Train.g.cs");
        Assert.Contains("MemoryBudgetMB = 150.0,", source);
        Assert.Contains("// The per-rank memory plan (Adam, fp32, batch 1 per rank, 4 ranks (the rank that holds the most)); docs/memory.md:", source);
        Assert.Contains("//   none                   64.0       64.0            128.1          0.0      256.2", source);
        Assert.Contains("//   optimizer-state        64.0       64.0             32.0          0.0      160.1", source);
        Assert.Contains("//   gradients              64.0       16.0             32.0          0.0      112.1", source);
        Assert.Contains("//   parameters             16.0       16.0             32.0          0.0       64.1", source);
        // Each Linear's weight and bias, in model order; activations per sample: 4 · 2048 + 1 floats (MSE keeps none).
        Assert.Contains("{\n            4194304, 2048, 4194304, 2048, 4194304, 2048, 4194304, 2048, 2048, 1,\n        }, 32772, 16386),", source.Replace("\r\n", "\n"));
    }

    [Fact]
    public void OneRank_TheFixIsShardingOverMoreRanks()
    {
        var run = Verify("Loss.MSE, Optimizer.Adam, BatchSize = 1, {|MD0430:MemoryBudgetMB = 150|}", "");
        // The fewest ranks first: at 2, stage 3 (16Ψ/2 of fp32 Adam's 256.2 MiB) fits where stages 1 and 2 need 4.
        Assert.EndsWith("[Parallel(ParallelMode.Sync, WorldSize = 2, Shard = ShardLevel.Parameters)] would make it 128.1 MiB per rank", Assert.Single(run.ModelDiagnostics).GetMessage());
    }

    [Fact]
    public void Bf16_Stage3IsOffered_WhereOnlyItFits()
    {
        // bf16 Adam over 4 ranks: stage 2 is 2Ψ + 14Ψ/4 = 88 MiB, stage 3 16Ψ/4 = 64 MiB; the runtime trains stage 3 in bf16.
        var run = Verify("Loss.MSE, Optimizer.Adam, BatchSize = 1, Precision = Precision.BFloat16, {|MD0430:MemoryBudgetMB = 80|}", "[Parallel(ParallelMode.Sync, WorldSize = 4, Shard = ShardLevel.Gradients)]");
        Assert.Matches(@"Shard = ShardLevel\.Parameters would make it 6[0-9]\.[0-9] MiB$", Assert.Single(run.ModelDiagnostics).GetMessage());
    }

    [Fact]
    public void ActivationsAboveTheBudget_TheFixIsASmallerBatch()
    {
        // 64 -> 32 -> 10 with cross-entropy: 336 activation bytes per sample (Linear 128, ReLU 128, Linear 40, log-softmax 40).
        const string mlp = "{ [Linear(32)] public partial Linear H { get; } [ReLU] public partial ReLU A { get; } [Linear(10)] public partial Linear O { get; } }";
        var run = Verify("Loss.CrossEntropy, Optimizer.Adam, BatchSize = 100000, {|MD0430:MemoryBudgetMB = 16|}", "", mlp, "B, 64");
        string message = Assert.Single(run.ModelDiagnostics).GetMessage();
        Assert.Contains("the largest term is activations, 32.0 MiB", message);
        // (16 MiB − 2,410 · 16 bytes of model state) / 336 bytes = 49,817 samples.
        Assert.EndsWith("BatchSize = 49817 would make it 16.0 MiB (GradientAccumulation = 3 keeps about 100000 samples per step)", message);
    }

    [Fact]
    public void HugeWorldSize_PlansWithoutAllocatingARankEach()
    {
        var run = Verify("Loss.MSE, Optimizer.Adam, BatchSize = 1, {|MD0430:MemoryBudgetMB = 1|}", "[Parallel(ParallelMode.Sync, WorldSize = 2147483647)]");
        // Past one rank per tensor the largest share is the largest tensor: 16 bytes × 4,194,304 = 64.0 MiB at stage 3.
        Assert.Contains("ZeRO stage 3, makes it 64.0 MiB", Assert.Single(run.ModelDiagnostics).GetMessage());
    }

    [Fact]
    public void BudgetLargerThanEveryPlan_IsNoDiagnostic_AndANegativeOneIsMD0408()
    {
        Verify("Loss.MSE, Optimizer.SGD, MemoryBudgetMB = 1e6", "");
        Verify("Loss.MSE, Optimizer.SGD, {|MD0408:MemoryBudgetMB = -1|}", "");
    }
}
