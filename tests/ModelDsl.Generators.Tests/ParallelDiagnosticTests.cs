using Microsoft.CodeAnalysis;

namespace ModelDsl.Generators.Tests;

/// <summary>[Parallel]: every MD02xx diagnostic by id and span, and the generated plan.</summary>
public class ParallelDiagnosticTests
{
    private const string Mlp = """
        {
            [Linear(32)] public partial Linear Hidden { get; }
            [ReLU]       public partial ReLU Act { get; }
            [Linear(10)] public partial Linear Output { get; }
        }
        """;

    private const string Train = "[Train(Loss.CrossEntropy, Optimizer.SGD, Data = \"train.csv\")]\n";

    private static GeneratorRun VerifyParallel(string parallelArguments, string layers = Mlp, string train = Train) =>
        Markup.Verify($"[Model(Input = \"B, 64\")]\n{train}[Parallel({parallelArguments})]\npublic partial class M\n{layers}");

    [Fact]
    public void SyncPlan_GoesIntoTheGeneratedTrainingPlan()
    {
        var run = VerifyParallel("ParallelMode.Sync, WorldSize = 4, Backend = CommBackend.Mpi, BucketSizeMB = 8");
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        var source = run.Source("M.Train.g.cs");
        Assert.Contains("Mode = global::ModelDsl.ParallelMode.Sync,", source);
        Assert.Contains("WorldSize = 4,", source);
        Assert.Contains("Backend = global::ModelDsl.CommBackend.Mpi,", source);
        Assert.Contains("BucketSizeMB = 8.0,", source);
        Assert.DoesNotContain("SyncEvery", source);
    }

    [Fact]
    public void AsyncPlan_CarriesItsSettings()
    {
        var run = VerifyParallel("ParallelMode.Async, WorldSize = 2, SyncEvery = 4, WarmupSteps = 10, OuterOptimizer = OuterOptimizer.Nesterov, OuterLearningRate = 0.5");
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        var source = run.Source("M.Train.g.cs");
        Assert.Contains("SyncEvery = 4,", source);
        Assert.Contains("WarmupSteps = 10,", source);
        Assert.Contains("OuterOptimizer = global::ModelDsl.OuterOptimizer.Nesterov,", source);
        Assert.Contains("OuterLearningRate = 0.5,", source);
        // Overlap was not written: the runtime's default (true) applies, so the plan leaves it unset.
        Assert.DoesNotContain("OverlapAveraging", source);
        Assert.DoesNotContain("OuterMomentum", source);
        Assert.Contains("OverlapAveraging = false,", VerifyParallel("ParallelMode.Async, Overlap = false").Source("M.Train.g.cs"));
    }

    [Theory]
    [InlineData("ParallelMode.Sync, {|MD0201:WorldSize = 0|}")]
    [InlineData("ParallelMode.Sync, {|MD0202:BucketSizeMB = 0|}")]
    [InlineData("ParallelMode.Sync, {|MD0202:BucketSizeMB = -1.5|}")]
    [InlineData("ParallelMode.Sync, {|MD0203:SyncEvery = 4|}")]
    [InlineData("ParallelMode.Sync, {|MD0203:OuterOptimizer = OuterOptimizer.Nesterov|}")]
    [InlineData("ParallelMode.Sync, {|MD0203:Overlap = false|}")]
    [InlineData("ParallelMode.Async, {|MD0206:SyncEvery = 0|}")]
    [InlineData("ParallelMode.Async, {|MD0206:WarmupSteps = -1|}")]
    [InlineData("ParallelMode.Async, {|MD0206:OuterLearningRate = 0.5|}")]
    [InlineData("ParallelMode.Async, OuterOptimizer = OuterOptimizer.Nesterov, {|MD0206:OuterLearningRate = 0|}")]
    [InlineData("ParallelMode.Async, OuterOptimizer = OuterOptimizer.Nesterov, {|MD0206:OuterMomentum = 1.0|}")]
    [InlineData("ParallelMode.Async, {|MD0207:WorldSize = 1|}")]
    public void BadSettings_AreReportedOnTheArgument(string arguments) => VerifyParallel(arguments);

    [Theory]
    [InlineData("{|MD0203:(ParallelMode)5|}", "(ParallelMode)5 is not a ParallelMode")]
    [InlineData("ParallelMode.Sync, {|MD0203:Backend = (CommBackend)9|}", "(CommBackend)9 is not a CommBackend")]
    [InlineData("ParallelMode.Async, {|MD0206:OuterOptimizer = (OuterOptimizer)(-1)|}", "(OuterOptimizer)-1 is not an OuterOptimizer")]
    public void EnumValuesThatNameNoMember_AreReportedWithTheEnumsName(string arguments, string message) =>
        Assert.Equal(message, Assert.Single(VerifyParallel(arguments).ModelDiagnostics).GetMessage());

    [Fact]
    public void ParallelWithoutTrain_ReportsMD0204_OnTheAttribute() =>
        Markup.Verify("[Model(Input = \"B, 64\")]\n[{|MD0204:Parallel(ParallelMode.Sync)|}]\npublic partial class M\n" + Mlp);

    [Fact]
    public void BatchNormAtWorldSizeTwo_WithoutSyncBatchNorm_WarnsMD0205_OnTheAttribute()
    {
        const string layers = "{ [Linear(32)] public partial Linear L { get; } [BatchNorm1d] public partial BatchNorm1d Bn { get; } [Linear(10)] public partial Linear O { get; } }";
        var run = Markup.Verify($"[Model(Input = \"B, 64\")]\n{Train}[{{|MD0205:Parallel(ParallelMode.Sync)|}}]\npublic partial class M\n{layers}");
        Assert.Contains("Bn", Assert.Single(run.ModelDiagnostics).GetMessage());
        VerifyParallel("ParallelMode.Sync, SyncBatchNorm = true", layers);
        VerifyParallel("ParallelMode.Sync, WorldSize = 1", layers);
    }

    [Fact]
    public void MaxRestarts_GoesIntoThePlan_OnlyWhenDeclared()
    {
        var run = VerifyParallel("ParallelMode.Sync, WorldSize = 2, MaxRestarts = 3");
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        Assert.Contains("MaxRestarts = 3, // restarts of a failed job from its last checkpoint", run.Source("M.Train.g.cs"));
        Assert.DoesNotContain("MaxRestarts", VerifyParallel("ParallelMode.Sync, WorldSize = 2").Source("M.Train.g.cs"));
    }

    [Theory]
    [InlineData("ParallelMode.Sync, {|MD0208:MaxRestarts = -1|}")]
    [InlineData("ParallelMode.Async, SyncEvery = 2, {|MD0208:MaxRestarts = int.MinValue|}")]
    public void NegativeMaxRestarts_ReportsMD0208(string arguments) => VerifyParallel(arguments);

    [Fact]
    public void MaxRestartsAtWorldSizeOne_WarnsMD0209()
    {
        var run = VerifyParallel("ParallelMode.Sync, WorldSize = 1, {|MD0209:MaxRestarts = 2|}");
        Assert.Equal(DiagnosticSeverity.Warning, run.ModelDiagnostics.Single().Severity);
        Assert.Contains("MaxRestarts = 2,", run.Source("M.Train.g.cs"));
    }

    [Fact]
    public void Shard_GoesIntoThePlan_OnlyWhenDeclared()
    {
        var run = VerifyParallel("ParallelMode.Sync, WorldSize = 2, Shard = ShardLevel.OptimizerState");
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        Assert.Contains("Shard = global::ModelDsl.ShardLevel.OptimizerState,", run.Source("M.Train.g.cs"));
        Assert.Contains("Shard = global::ModelDsl.ShardLevel.Gradients,", VerifyParallel("ParallelMode.Sync, Shard = ShardLevel.Gradients").Source("M.Train.g.cs"));
        Assert.Contains("Shard = global::ModelDsl.ShardLevel.Parameters,", VerifyParallel("ParallelMode.Sync, WorldSize = 4, Shard = ShardLevel.Parameters").Source("M.Train.g.cs"));
        Assert.DoesNotContain("Shard", VerifyParallel("ParallelMode.Sync, WorldSize = 2").Source("M.Train.g.cs"));
    }

    [Fact]
    public void ShardAtWorldSizeOne_WarnsMD0210_OnTheShardArgument()
    {
        var run = VerifyParallel("ParallelMode.Sync, WorldSize = 1, {|MD0210:Shard = ShardLevel.Gradients|}");
        var warning = Assert.Single(run.ModelDiagnostics);
        Assert.Equal(DiagnosticSeverity.Warning, warning.Severity);
        Assert.Contains("Shard = ShardLevel.Gradients at WorldSize = 1", warning.GetMessage());
        VerifyParallel("ParallelMode.Sync, WorldSize = 1, Shard = ShardLevel.None");
    }

    [Theory]
    [InlineData("ParallelMode.Async, WorldSize = 2, {|MD0211:Shard = ShardLevel.OptimizerState|}")]
    [InlineData("ParallelMode.Async, SyncEvery = 4, {|MD0211:Shard = ShardLevel.Gradients|}")]
    [InlineData("ParallelMode.Sync, {|MD0203:Shard = (ShardLevel)7|}")]
    public void BadShardSettings_AreReportedOnTheShardArgument(string arguments) => VerifyParallel(arguments);
}
