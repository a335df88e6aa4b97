using System.Reflection;

namespace ModelDsl.Generators.Tests;

/// <summary>
/// Every public settable property of the plan attributes (found by reflection over the DSL's types) is read by its
/// parser: writing it changes the generated plan. A property the parser never reads, or reads under a misspelled name,
/// leaves the plan as it was and fails here; a property added to an attribute without a case here fails too.
/// </summary>
public class PlanPropertyTests
{
    private const string Mlp = """
        {
            [Linear(32)] public partial Linear Hidden { get; }
            [ReLU]       public partial ReLU Act { get; }
            [Linear(10)] public partial Linear Output { get; }
        }
        """;

    /// <summary>A model with a block, over input (B, 8, 16): what Recompute.Blocks needs.</summary>
    private const string WithBlock = """
        {
            [TransformerBlock(Heads = 2)] public partial TransformerBlock Blocks { get; }
            [Flatten]                     public partial Flatten Flat { get; }
            [Linear(10)]                  public partial Linear Output { get; }
        }
        """;

    private const string LanguageModel = """
        {
            [Embedding(65, 16)] public partial Embedding Tokens { get; }
            [Linear(65)]        public partial Linear Head { get; }
        }
        """;

    /// <summary>
    /// Per property: the [Train] arguments after the loss and optimiser without it (what it needs besides) and with it.
    /// SequenceLength must be written for a model with a symbolic T, so its case changes one written value to another.
    /// </summary>
    private static readonly Dictionary<string, (string Without, string With)> TrainCases = new()
    {
        [nameof(TrainAttribute.LearningRate)] = ("", "LearningRate = 0.05"),
        [nameof(TrainAttribute.WeightDecay)] = ("", "WeightDecay = 0.01"),
        [nameof(TrainAttribute.Momentum)] = ("", "Momentum = 0.9"),
        [nameof(TrainAttribute.Nesterov)] = ("Momentum = 0.9", "Momentum = 0.9, Nesterov = true"),
        [nameof(TrainAttribute.Epochs)] = ("", "Epochs = 3"),
        [nameof(TrainAttribute.BatchSize)] = ("", "BatchSize = 16"),
        [nameof(TrainAttribute.Seed)] = ("", "Seed = 7"),
        [nameof(TrainAttribute.Schedule)] = ("", "Schedule = Schedule.Step"),
        [nameof(TrainAttribute.WarmupEpochs)] = ("Schedule = Schedule.Cosine", "Schedule = Schedule.Cosine, WarmupEpochs = 2"),
        [nameof(TrainAttribute.StepSize)] = ("Schedule = Schedule.Step", "Schedule = Schedule.Step, StepSize = 3"),
        [nameof(TrainAttribute.Gamma)] = ("Schedule = Schedule.Step", "Schedule = Schedule.Step, Gamma = 0.5"),
        [nameof(TrainAttribute.GradientClipNorm)] = ("", "GradientClipNorm = 1.5"),
        [nameof(TrainAttribute.Data)] = ("", "Data = \"train.csv\""),
        [nameof(TrainAttribute.TestData)] = ("", "TestData = \"test.csv\""),
        [nameof(TrainAttribute.FeatureScale)] = ("", "FeatureScale = 0.0625"),
        [nameof(TrainAttribute.ValidationFraction)] = ("", "ValidationFraction = 0.25"),
        [nameof(TrainAttribute.EarlyStoppingPatience)] = ("", "EarlyStoppingPatience = 2"),
        [nameof(TrainAttribute.ScheduleInterval)] = ("", "ScheduleInterval = ScheduleInterval.Step"),
        [nameof(TrainAttribute.SequenceLength)] = ("SequenceLength = 16", "SequenceLength = 24"),
        [nameof(TrainAttribute.Header)] = ("", "Header = true"),
        [nameof(TrainAttribute.LabelColumn)] = ("", "LabelColumn = \"label\""),
        [nameof(TrainAttribute.GradientAccumulation)] = ("", "GradientAccumulation = 4"),
        [nameof(TrainAttribute.MemoryBudgetMB)] = ("", "MemoryBudgetMB = 1000"),
        [nameof(TrainAttribute.Precision)] = ("", "Precision = Precision.BFloat16"),
        [nameof(TrainAttribute.Recompute)] = ("", "Recompute = Recompute.Blocks"),
    };

    /// <summary>Per property: the [Parallel] arguments without it and with it (the mode first).</summary>
    private static readonly Dictionary<string, (string Without, string With)> ParallelCases = new()
    {
        [nameof(ParallelAttribute.WorldSize)] = ("ParallelMode.Sync", "ParallelMode.Sync, WorldSize = 3"),
        [nameof(ParallelAttribute.Backend)] = ("ParallelMode.Sync", "ParallelMode.Sync, Backend = CommBackend.Mpi"),
        [nameof(ParallelAttribute.BucketSizeMB)] = ("ParallelMode.Sync", "ParallelMode.Sync, BucketSizeMB = 10"),
        [nameof(ParallelAttribute.SyncBatchNorm)] = ("ParallelMode.Sync", "ParallelMode.Sync, SyncBatchNorm = true"),
        [nameof(ParallelAttribute.SyncEvery)] = ("ParallelMode.Async", "ParallelMode.Async, SyncEvery = 4"),
        [nameof(ParallelAttribute.WarmupSteps)] = ("ParallelMode.Async", "ParallelMode.Async, WarmupSteps = 5"),
        [nameof(ParallelAttribute.OuterOptimizer)] = ("ParallelMode.Async", "ParallelMode.Async, OuterOptimizer = OuterOptimizer.Nesterov"),
        [nameof(ParallelAttribute.OuterLearningRate)] = ("ParallelMode.Async, OuterOptimizer = OuterOptimizer.Nesterov",
            "ParallelMode.Async, OuterOptimizer = OuterOptimizer.Nesterov, OuterLearningRate = 0.5"),
        [nameof(ParallelAttribute.OuterMomentum)] = ("ParallelMode.Async, OuterOptimizer = OuterOptimizer.Nesterov",
            "ParallelMode.Async, OuterOptimizer = OuterOptimizer.Nesterov, OuterMomentum = 0.5"),
        [nameof(ParallelAttribute.Overlap)] = ("ParallelMode.Async", "ParallelMode.Async, Overlap = false"),
        [nameof(ParallelAttribute.MaxRestarts)] = ("ParallelMode.Sync", "ParallelMode.Sync, MaxRestarts = 1"),
        [nameof(ParallelAttribute.Shard)] = ("ParallelMode.Sync", "ParallelMode.Sync, Shard = ShardLevel.Gradients"),
    };

    /// <summary>Per property: the [Prune] arguments without it and with it (Targets is required, so its case changes it).</summary>
    private static readonly Dictionary<string, (string Without, string With)> PruneCases = new()
    {
        [nameof(PruneAttribute.Targets)] = ("PruneMethod.LnStructured, 0.5, Targets = new[] { \"Hidden\" }",
            "PruneMethod.LnStructured, 0.5, Targets = new[] { \"Output\" }"),
        [nameof(PruneAttribute.N)] = ("PruneMethod.LnStructured, 0.5, Targets = new[] { \"Hidden\" }",
            "PruneMethod.LnStructured, 0.5, Targets = new[] { \"Hidden\" }, N = 1"),
        [nameof(PruneAttribute.Dim)] = ("PruneMethod.LnStructured, 0.5, Targets = new[] { \"Hidden\" }",
            "PruneMethod.LnStructured, 0.5, Targets = new[] { \"Hidden\" }, Dim = 0"),
        [nameof(PruneAttribute.FineTuneEpochs)] = ("PruneMethod.LnStructured, 0.5, Targets = new[] { \"Hidden\" }",
            "PruneMethod.LnStructured, 0.5, Targets = new[] { \"Hidden\" }, FineTuneEpochs = 1"),
    };

    private static string[] Settable(Type attribute) => attribute
        .GetProperties(BindingFlags.Public | BindingFlags.Instance)
        .Where(p => p.CanWrite)
        .Select(p => p.Name)
        .OrderBy(n => n, StringComparer.Ordinal)
        .ToArray();

    [Fact]
    public void EverySettableProperty_HasACase()
    {
        Assert.Equal(Settable(typeof(TrainAttribute)), TrainCases.Keys.OrderBy(n => n, StringComparer.Ordinal));
        Assert.Equal(Settable(typeof(ParallelAttribute)), ParallelCases.Keys.OrderBy(n => n, StringComparer.Ordinal));
        Assert.Equal(Settable(typeof(PruneAttribute)), PruneCases.Keys.OrderBy(n => n, StringComparer.Ordinal));
        Assert.Equal(Settable(typeof(QuantizeAttribute)), QuantizeCases.Keys.OrderBy(n => n, StringComparer.Ordinal)); // the mode is a constructor argument
    }

    /// <summary>Per property: the [Quantize] arguments without it and with it.</summary>
    private static readonly Dictionary<string, (string Without, string With)> QuantizeCases = new()
    {
        [nameof(QuantizeAttribute.CalibrationBatches)] = ("QuantizeMode.StaticInt8", "QuantizeMode.StaticInt8, CalibrationBatches = 4"),
    };

    public static IEnumerable<object[]> QuantizeProperties() => QuantizeCases.Keys.Select(k => new object[] { k });

    [Theory]
    [MemberData(nameof(QuantizeProperties))]
    public void QuantizeProperty_WhenWritten_ChangesThePlan(string property)
    {
        var (without, with) = QuantizeCases[property];
        string Plan(string arguments) => Generate($"[Model(Input = \"B, 64\")]\n[Train(Loss.CrossEntropy, Optimizer.SGD)]\n[Quantize({arguments})]", Mlp);
        AssertChanges(property, with, Plan(without), Plan(with));
    }

    public static IEnumerable<object[]> Train() => TrainCases.Keys.Select(k => new object[] { k });
    public static IEnumerable<object[]> Parallel() => ParallelCases.Keys.Select(k => new object[] { k });
    public static IEnumerable<object[]> Prune() => PruneCases.Keys.Select(k => new object[] { k });

    [Theory]
    [MemberData(nameof(Train))]
    public void TrainProperty_WhenWritten_ChangesThePlan(string property)
    {
        var (without, with) = TrainCases[property];
        bool language = property == nameof(TrainAttribute.SequenceLength);
        bool block = property == nameof(TrainAttribute.Recompute);
        string Plan(string arguments) => Generate(
            $"[Model(Input = \"B, {(language ? "T\", InputType = DType.Int64" : block ? "8, 16\"" : "64\"")})]\n" +
            $"[Train(Loss.CrossEntropy, Optimizer.SGD{(arguments.Length > 0 ? ", " + arguments : "")})]",
            language ? LanguageModel : block ? WithBlock : Mlp);
        AssertChanges(property, with, Plan(without), Plan(with));
    }

    [Theory]
    [MemberData(nameof(Parallel))]
    public void ParallelProperty_WhenWritten_ChangesThePlan(string property)
    {
        var (without, with) = ParallelCases[property];
        string Plan(string arguments) => Generate($"[Model(Input = \"B, 64\")]\n[Train(Loss.CrossEntropy, Optimizer.SGD)]\n[Parallel({arguments})]", Mlp);
        AssertChanges(property, with, Plan(without), Plan(with));
    }

    [Theory]
    [MemberData(nameof(Prune))]
    public void PruneProperty_WhenWritten_ChangesThePlan(string property)
    {
        var (without, with) = PruneCases[property];
        string Plan(string arguments) => Generate($"[Model(Input = \"B, 64\")]\n[Train(Loss.CrossEntropy, Optimizer.SGD)]\n[Prune({arguments})]", Mlp);
        AssertChanges(property, with, Plan(without), Plan(with));
    }

    /// <summary>The generated plan of a valid model (no MD diagnostic, no compiler warning).</summary>
    private static string Generate(string attributes, string layers)
    {
        var run = Markup.Verify($"{attributes}\npublic partial class M\n{layers}");
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        return run.Source("M.Train.g.cs");
    }

    private static void AssertChanges(string property, string with, string planWithout, string planWith)
    {
        Assert.Contains(property + " =", with);
        Assert.NotEqual(planWithout, planWith);
    }
}
