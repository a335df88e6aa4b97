using System.Collections;
using System.Collections.Generic;
using System.CommandLine;
using System.Linq;
using ModelDsl.Plans;
using ModelDsl.Runtime.Distributed;
using ModelDsl.Runtime.Training;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// The shared plan range rules (src/Shared/PlanRules.cs, also compiled into the generator) and the trainer's
/// command-line overrides declared once each (TrainingOverrides): parsed, range-checked with the plan's rule and
/// applied, without starting a process.
/// </summary>
public sealed class TrainingOverridesTests
{
    private static readonly TrainingPlan Plan = new()
    {
        ModelName = "M", SampleShape = new long[] { 4 }, Loss = Loss.CrossEntropy, Optimizer = Optimizer.SGD,
        Data = "train.csv", Epochs = 3, BatchSize = 8, LearningRate = 0.1,
    };

    private static IEnumerable<RangeRule> Rules() => typeof(PlanRules).GetFields()
        .Where(f => f.FieldType == typeof(RangeRule)).Select(f => (RangeRule)f.GetValue(null)!);

    [Fact]
    public void EveryRule_NamesATrainingPlanSetting()
    {
        var rules = Rules().ToList();
        Assert.True(rules.Count >= 18, $"{rules.Count} rules");
        foreach (var rule in rules)
            Assert.NotNull(typeof(TrainingPlan).GetProperty(rule.Setting));
        Assert.Equal(rules.Count, rules.Select(r => r.Setting).Distinct().Count());
    }

    [Theory]
    [InlineData("Epochs", 1, 0)]
    [InlineData("WorldSize", 1, 0)]
    [InlineData("SyncEvery", 1, 0)]
    [InlineData("MaxRestarts", 0, -1)]
    [InlineData("GradientAccumulation", 1, 0)]
    [InlineData("EarlyStoppingPatience", 0, -1)]
    [InlineData("LearningRate", 1e-9, 0)]
    [InlineData("LearningRate", 1e-9, double.PositiveInfinity)]
    [InlineData("Momentum", 0, 1)]
    [InlineData("Gamma", 1, 0)]
    [InlineData("ValidationFraction", 0, 1)]
    [InlineData("OuterMomentum", 0.99, double.NaN)]
    public void Rule_HoldsInsideItsRange_AndNotOutside(string setting, double inside, double outside)
    {
        var rule = Rules().Single(r => r.Setting == setting);
        Assert.True(rule.Holds(inside));
        Assert.False(rule.Holds(outside));
    }

    [Theory]
    [InlineData("--epochs 0", "--epochs must be at least 1, got 0")]
    [InlineData("--batch-size -2", "--batch-size must be at least 1, got -2")]
    [InlineData("--lr -0.5", "--lr must be a positive number, got -0.5")]
    [InlineData("--patience -1", "--patience must be 0 (off) or a number of epochs, got -1")]
    [InlineData("--world-size 0", "--world-size must be at least 1, got 0")]
    [InlineData("--mode async --sync-every 0", "--sync-every must be at least 1 (local steps between averaging rounds), got 0")]
    [InlineData("--max-restarts -1", "--max-restarts must be 0 or more, got -1")]
    [InlineData("--max-restarts 1", "--max-restarts restarts the ranks the trainer starts under mpirun: add --world-size 2 or more (a single process continues with --resume)")]
    [InlineData("--threads -1", "--threads must be 0 or more, got -1")]
    [InlineData("--grad-accum 0", "--grad-accum must be at least 1 (micro-batches per optimiser step), got 0")]
    [InlineData("--precision bf16 --world-size 2 --sync-batchnorm", "--precision bf16 does not combine with --sync-batchnorm yet (the bfloat16 working copy's BatchNorm would keep per-rank statistics): drop one of them")]
    [InlineData("--sync-every 4", "--sync-every applies to asynchronous training (local SGD); add --mode async")]
    [InlineData("--backend nccl", "--backend nccl reduces CUDA tensors only: add --device cuda, or use --backend mpi (or auto) on the CPU")]
    public void BadOverride_IsOneTrainingException(string commandLine, string message)
    {
        var e = Assert.Throws<TrainingException>(() => Apply(commandLine));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void Overrides_ChangeThePlanAndTheRun()
    {
        var options = Apply("--epochs 7 --batch-size 16 --lr 0.25 --seed 9 --world-size 3 --mode async --sync-every 5 --no-overlap " +
                            "--outer-optimizer nesterov --max-restarts 2 --hostfile hosts --threads 2 --resume --checkpoint-dir ck --label-column y --header");
        var plan = options.Plan;
        Assert.Equal((7, 16, 0.25, 9L, 3), (plan.Epochs, plan.BatchSize, plan.LearningRate, plan.Seed, plan.WorldSize));
        Assert.Equal((ParallelMode.Async, 5, false, OuterOptimizer.Nesterov, 2), (plan.Mode, plan.SyncEvery, plan.OverlapAveraging, plan.OuterOptimizer, plan.MaxRestarts));
        Assert.Equal((true, "y"), (plan.Header, plan.LabelColumn));
        Assert.Equal(("hosts", 2, true, "ck"), (options.Hostfile, options.Threads, options.Resume, options.CheckpointDirectory));
    }

    [Fact]
    public void GradAccum_SetsTheAccumulation_AndChangesTheFingerprint()
    {
        var options = Apply("--grad-accum 4");
        Assert.Equal(4, options.Plan.GradientAccumulation);
        Assert.Equal(1, Apply("").Plan.GradientAccumulation);
        Assert.Equal(3, Apply("", plan: Plan with { GradientAccumulation = 3 }).Plan.GradientAccumulation);
        // Fewer steps over more samples each: a checkpoint of one setting does not resume under the other.
        Assert.NotEqual(Plan.Fingerprint(), options.Plan.Fingerprint());
    }

    [Fact]
    public void Precision_SetsThePlan_AndLeavesTheFingerprint()
    {
        Assert.Equal(ModelDsl.Precision.BFloat16, Apply("--precision bf16").Plan.Precision);
        Assert.Equal(ModelDsl.Precision.Float32, Apply("").Plan.Precision);
        Assert.Equal(ModelDsl.Precision.Float32, Apply("--precision fp32", plan: Plan with { Precision = ModelDsl.Precision.BFloat16 }).Plan.Precision);
        Assert.Equal(ModelDsl.Precision.BFloat16, Apply("", plan: Plan with { Precision = ModelDsl.Precision.BFloat16 }).Plan.Precision);
        // ZeRO stage 3 trains in bf16 too (ShardedWorkingCopy).
        var stage3 = Apply("--precision bf16 --world-size 2 --shard parameters").Plan;
        Assert.Equal((ModelDsl.Precision.BFloat16, ShardLevel.Parameters), (stage3.Precision, stage3.Shard));
        // Checkpoints hold the float32 master weights either way: a run resumes in the other precision.
        Assert.Equal(Plan.Fingerprint(), Apply("--precision bf16").Plan.Fingerprint());
    }

    [Fact]
    public void Recompute_SetsThePlan_AndLeavesTheFingerprint()
    {
        Assert.Equal(ModelDsl.Recompute.Blocks, Apply("--recompute blocks").Plan.Recompute);
        Assert.Equal(ModelDsl.Recompute.None, Apply("").Plan.Recompute);
        Assert.Equal(ModelDsl.Recompute.None, Apply("--recompute none", plan: Plan with { Recompute = ModelDsl.Recompute.Blocks }).Plan.Recompute);
        Assert.Equal(ModelDsl.Recompute.Blocks, Apply("", plan: Plan with { Recompute = ModelDsl.Recompute.Blocks }).Plan.Recompute);
        // The checkpoint is the same either way: a run resumes with recomputation switched on or off.
        Assert.Equal(Plan.Fingerprint(), Apply("--recompute blocks").Plan.Fingerprint());
    }

    [Fact]
    public void NoArguments_KeepTheDeclaredPlan()
    {
        var options = Apply("");
        Assert.Equal(Plan.Fingerprint(), options.Plan.Fingerprint());
        Assert.Equal(System.IO.Path.Combine("checkpoints", "M"), options.CheckpointDirectory);
    }

    [Fact]
    public void HeaderFalse_OnTheCommandLine_OverridesADeclaredHeader()
    {
        var declared = Plan with { Header = true };
        Assert.False(Apply("--header false", plan: declared).Plan.Header);
        Assert.True(Apply("", plan: declared).Plan.Header);
        Assert.Null(Apply("").Plan.Header); // left out and undeclared: detected from the file
    }

    [Fact]
    public void EachOptionIsDeclaredOnce()
    {
        var names = TrainingOverrides.All(Plan, () => null).Select(o => o.Option.Name).ToList();
        Assert.Equal(names.Count, names.Distinct().Count());
        Assert.Contains("--epochs", names);
        Assert.Contains("--label-column", names);
        Assert.Contains("--max-restarts", names);
    }

    [Theory]
    [InlineData("--shard optimizer-state", ShardLevel.None, ShardLevel.OptimizerState)]
    [InlineData("--shard gradients", ShardLevel.OptimizerState, ShardLevel.Gradients)]
    [InlineData("--shard none", ShardLevel.Gradients, ShardLevel.None)]
    [InlineData("--shard parameters", ShardLevel.None, ShardLevel.Parameters)]
    [InlineData("", ShardLevel.Gradients, ShardLevel.Gradients)]
    [InlineData("--mode async", ShardLevel.Gradients, ShardLevel.None)]
    public void Shard_OverridesTheDeclaredLevel_AndAsyncDropsADeclaredOne(string commandLine, ShardLevel declared, ShardLevel expected) =>
        Assert.Equal(expected, Apply(commandLine, plan: Plan with { Shard = declared }).Plan.Shard);

    [Theory]
    [InlineData("--mode async --shard optimizer-state", "--shard optimizer-state applies to synchronous training (one model stepped together); add --mode sync")]
    public void BadShard_IsOneTrainingException(string commandLine, string message) =>
        Assert.Equal(message, Assert.Throws<TrainingException>(() => Apply(commandLine)).Message);

    [Fact]
    public void UnderALauncher_ItsWorldSizeWins_AndRestartsNeedNoWorldSizeOption()
    {
        var launcher = DistributedEnvironment.Detect(new Hashtable { ["OMPI_COMM_WORLD_RANK"] = "1", ["OMPI_COMM_WORLD_SIZE"] = "4" });
        var options = Apply("--world-size 2 --max-restarts 1", () => launcher);
        Assert.Equal((4, 1), (options.Plan.WorldSize, options.Plan.MaxRestarts));
        options = Apply("--max-restarts 1", () => launcher);
        Assert.Equal((4, 1), (options.Plan.WorldSize, options.Plan.MaxRestarts));
    }

    private static TrainingOptions Apply(string commandLine, System.Func<DistributedEnvironment?>? environment = null, TrainingPlan? plan = null)
    {
        plan ??= Plan;
        var overrides = TrainingOverrides.All(plan, environment ?? (() => null));
        var root = new RootCommand();
        foreach (var o in overrides) root.Options.Add(o.Option);
        var parsed = root.Parse(commandLine);
        Assert.Empty(parsed.Errors);
        var options = new TrainingOptions { Plan = plan, CheckpointDirectory = "checkpoints" };
        foreach (var o in overrides) options = o.Apply(options, parsed);
        return options;
    }
}
