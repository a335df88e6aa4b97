using System.IO;
using ModelDsl.Runtime.Training;
using Xunit.Abstractions;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// The report's <c>memory</c> section: the compiler's per-rank plan against what the Digits CNN's generated trainer
/// holds (fp32, Adam's moments), on one rank and on two under mpirun as DDP, ZeRO-1 and ZeRO-2. Lean runs: 640 rows,
/// one epoch, no optimisation passes.
/// </summary>
public sealed class MemoryPlanEndToEndTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-memory-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private MemoryReport Train(string name, params string[] args) => TrainReport(name, args).GetSection<MemoryReport>("memory")!;

    private TrainingReport TrainReport(string name, params string[] args)
    {
        string data = Path.Combine(_dir, "rows.csv");
        if (!File.Exists(data))
            File.WriteAllLines(data, File.ReadLines(Path.Combine(DigitsProgram.RepoRoot(), "samples", "Digits", "data", "optdigits.tra")).Take(640));
        string[] common = { "--data", data, "--test-data", "", "--no-optimize", "--plain", "--checkpoint-dir", name, "--report", name + ".json" };
        if (!args.Contains("--epochs")) common = common.Append("--epochs").Append("1").ToArray();
        var run = DigitsProgram.Run(_dir, common.Concat(args).ToArray());
        Assert.True(run.ExitCode == 0, run.ToString());
        var report = TrainingReport.Read(Path.Combine(_dir, name + ".json"));
        Assert.NotNull(report.GetSection<MemoryReport>("memory"));
        return report;
    }

    /// <summary>Planned model state within 5% of measured (each term and their sum), activations within 25%.</summary>
    private void AssertPlanHolds(string run, MemoryReport memory, bool activations = true)
    {
        var planned = memory.Planned ?? throw new Xunit.Sdk.XunitException("no planned figures");
        var measured = memory.Measured;
        // The row docs/memory.md shows: bytes planned / measured.
        output.WriteLine($"| {run} | {planned.Parameters:N0} / {measured.Parameters:N0} | {planned.Gradients:N0} / {measured.Gradients:N0} | " +
            $"{planned.OptimizerState:N0} / {measured.OptimizerState:N0} | {planned.Activations:N0} / {measured.Activations:N0} | {measured.PeakRss:N0} |");
        Within(0.05, "parameters", planned.Parameters, measured.Parameters);
        Within(0.05, "gradients", planned.Gradients, measured.Gradients);
        Within(0.05, "optimizer_state", planned.OptimizerState, measured.OptimizerState);
        Within(0.05, "model state", planned.Parameters + planned.Gradients + planned.OptimizerState,
            measured.Parameters + measured.Gradients + measured.OptimizerState);
        Assert.True(measured.Activations is > 0, "activations were not measured");
        if (activations) Within(0.25, "activations", planned.Activations!.Value, measured.Activations!.Value);
        Assert.True(measured.PeakRss > measured.Total, $"peak_rss {measured.PeakRss} below the tensors' {measured.Total}");
    }

    private static void Within(double tolerance, string what, long planned, long measured) =>
        Assert.True(Math.Abs(planned - measured) <= tolerance * Math.Max(1, measured), $"{what}: planned {planned} bytes, measured {measured}");

    [Fact]
    public void OneRank_PlannedMatchesMeasured()
    {
        var memory = Train("one");
        Assert.Equal("none", memory.Shard);
        Assert.Equal("fp32", memory.Precision);
        AssertPlanHolds("1 rank", memory);
        // Ψ = 151,498 parameters in fp32; Adam's two moments.
        Assert.Equal(151_498L * 4, memory.Measured.Parameters);
        Assert.Equal(151_498L * 8, memory.Measured.OptimizerState);
    }

    [Fact]
    public void TwoRanks_DdpZero1Zero2_PlannedMatchesMeasured_AndEachStageHoldsLess()
    {
        var ddp = Train("ddp", "--world-size", "2");
        var zero1 = Train("zero1", "--world-size", "2", "--shard", "optimizer-state");
        var zero2 = Train("zero2", "--world-size", "2", "--shard", "gradients");
        AssertPlanHolds("2 ranks, DDP", ddp);
        AssertPlanHolds("2 ranks, ZeRO-1", zero1);
        AssertPlanHolds("2 ranks, ZeRO-2", zero2);
        Assert.Equal(new[] { "none", "optimizer-state", "gradients" }, new[] { ddp.Shard, zero1.Shard, zero2.Shard });
        // Rank 0 owns Hidden's weight (131,072 of the 151,498 elements: ZeroRedundancyOptimizer's partition of whole tensors).
        Assert.Equal(131_072L * 8, zero1.Measured.OptimizerState);
        Assert.Equal(ddp.Measured.Gradients, zero1.Measured.Gradients);   // stage 1 keeps every averaged gradient
        Assert.Equal(131_072L * 4, zero2.Measured.Gradients);              // stage 2 keeps its partition's
        Assert.True(zero1.Measured.OptimizerState < ddp.Measured.OptimizerState);
    }

    [Fact]
    public void TwoRanks_Zero3_PlannedMatchesMeasured_AndTheRankHoldsItsPartitionsParametersOnly()
    {
        var zero3 = Train("zero3", "--world-size", "2", "--shard", "parameters");
        AssertPlanHolds("2 ranks, ZeRO-3", zero3);
        Assert.Equal("parameters", zero3.Shard);
        // Rank 0 owns Hidden's weight: between steps it holds those 131,072 of Ψ = 151,498 parameters, their
        // gradients and their two moments; the other tensors are empty until the next forward gathers them.
        Assert.Equal(131_072L * 4, zero3.Measured.Parameters);
        Assert.Equal(131_072L * 4, zero3.Measured.Gradients);
        Assert.Equal(131_072L * 8, zero3.Measured.OptimizerState);
    }

    [Fact]
    public void TwoRanks_Zero3InBf16_HoldsZerosLayout_16PsiOverN_AndTheLossFalls()
    {
        var report = TrainReport("zero3-bf16", "--world-size", "2", "--shard", "parameters", "--precision", "bf16", "--epochs", "2");
        var memory = report.GetSection<MemoryReport>("memory")!;
        Assert.Equal("parameters", memory.Shard);
        bool bf16 = ModelDsl.Runtime.Training.MixedPrecision.CpuFeatures.Current.HasBFloat16MatrixProducts;
        Assert.Equal(bf16 ? "bf16" : "fp32", memory.Precision); // a CPU without bfloat16 instructions trains (and plans) in fp32
        // The Digits CNN's activations mix bf16 (Linear) and fp32 (convolutions and BatchNorm run in fp32): the plan
        // counts 2 bytes per element, so only the model state is held to the plan here.
        AssertPlanHolds("2 ranks, ZeRO-3 bf16", memory, activations: !bf16);
        if (bf16)
        {
            // Rank 0 owns Hidden's weight (a Linear: bfloat16 in the working copy), 131,072 elements. Between steps it holds
            // their bf16 weights (2 bytes each), bf16 gradients (2) and fp32 master weights with two moments (12): 16Ψ′.
            Assert.Equal(131_072L * 2, memory.Measured.Parameters);
            Assert.Equal(131_072L * 2, memory.Measured.Gradients);
            Assert.Equal(131_072L * 12, memory.Measured.OptimizerState);
        }
        Assert.Equal(2, report.History.Count);
        Assert.All(report.History, e => Assert.True(double.IsFinite(e.TrainLoss), $"epoch {e.Epoch}: loss {e.TrainLoss}"));
        Assert.True(report.History[1].TrainLoss < report.History[0].TrainLoss,
            $"train loss {report.History[0].TrainLoss} then {report.History[1].TrainLoss}");
    }
}
