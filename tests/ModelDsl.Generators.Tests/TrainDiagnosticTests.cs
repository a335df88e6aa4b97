using Microsoft.CodeAnalysis;

namespace ModelDsl.Generators.Tests;

/// <summary>[Train]: every MD04xx diagnostic by id and span, and the generated trainer.</summary>
public class TrainDiagnosticTests
{
    private const string Mlp = """
        {
            [Linear(32)] public partial Linear Hidden { get; }
            [ReLU]       public partial ReLU Act { get; }
            [Linear(10)] public partial Linear Output { get; }
        }
        """;

    private static GeneratorRun VerifyTrain(string trainArguments, string layers = Mlp, string input = "B, 64") =>
        Markup.Verify($"[Model(Input = \"{input}\")]\n[Train({trainArguments})]\npublic partial class M\n{layers}");

    [Fact]
    public void ValidPlan_GeneratesATrainerThatCompiles()
    {
        var run = VerifyTrain("Loss.CrossEntropy, Optimizer.SGD, LearningRate = 0.1, Momentum = 0.9, Nesterov = true, Epochs = 3, BatchSize = 32, Seed = 7, Schedule = Schedule.Cosine, WarmupEpochs = 1, GradientClipNorm = 1.0, Data = \"train.csv\"");
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        var source = run.Source("M.Train.g.cs");
        Assert.Contains("SampleShape = new long[] { 64 },", source);
        Assert.Contains("Optimizer = global::ModelDsl.Optimizer.SGD,", source);
        Assert.Contains("public static int Run(string[] args) => global::ModelDsl.Runtime.Training.TrainingHost.Run(args, Plan, static () => new M(), Summary);", source);
    }

    [Theory]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam", "{ [Linear({|MD0101:32|}, 10)] public partial Linear L { get; } }")]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, {|MD0402:Epochs = 0|}", Mlp)]
    public void ModelOrPlanErrors_LeaveOnlyTheMDError_RunStillCompiles(string arguments, string layers)
    {
        var (source, _) = Markup.Parse(GeneratorHarness.Usings + "public static class Program { public static int Main(string[] args) => M.Run(args); }\n");
        var run = Markup.Verify(source.Substring(GeneratorHarness.Usings.Length) + $"[Model(Input = \"B, 64\")]\n[Train({arguments})]\npublic partial class M\n{layers}");
        Assert.DoesNotContain(run.CompilerDiagnostics, d => d.Severity == DiagnosticSeverity.Error);
    }

    [Fact]
    public void TrainerSnapshot() =>
        Snapshot.Match("DigitsMlp.Train", GeneratorHarness.Run(GeneratorHarness.Usings + """
            namespace Samples.Digits;
            [Model(Input = "B, 64")]
            [Train(Loss.CrossEntropy, Optimizer.Adam, LearningRate = 1e-3, Epochs = 30, BatchSize = 64, Data = "data/optdigits.tra", TestData = "data/optdigits.tes")]
            public partial class DigitsMlp
            {
                [Linear(128)] public partial Linear Hidden { get; }
                [ReLU]        public partial ReLU Act { get; }
                [Linear(10)]  public partial Linear Output { get; }
            }
            """).Source("DigitsMlp.Train.g.cs"));

    [Fact]
    public void WithoutTheRuntime_ReportsMD0400()
    {
        var (source, expected) = Markup.Parse(GeneratorHarness.Usings + "[Model(Input = \"B, 4\")]\n[{|MD0400:Train(Loss.MSE, Optimizer.SGD)|}]\npublic partial class M { [Linear(1)] public partial Linear L { get; } }");
        var run = GeneratorHarness.Run(GeneratorHarness.CompileWithoutRuntime(source));
        var d = Assert.Single(run.ModelDiagnostics);
        Assert.Equal(("MD0400", expected[0].Start), (d.Id, d.Location.SourceSpan.Start));
    }

    [Theory]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, {|MD0401:LearningRate = 0|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, {|MD0401:LearningRate = -1e-3|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, {|MD0402:Epochs = 0|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, {|MD0403:BatchSize = 0|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.SGD, {|MD0405:Momentum = 1.0|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, {|MD0405:Momentum = 0.9|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.SGD, {|MD0405:Nesterov = true|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.SGD, {|MD0405:WeightDecay = -0.1|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, Epochs = 5, Schedule = Schedule.Cosine, {|MD0406:WarmupEpochs = 5|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, {|MD0406:WarmupEpochs = 2|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, Schedule = Schedule.Step, {|MD0406:StepSize = 0|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, Schedule = Schedule.Step, {|MD0406:Gamma = 1.5|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, {|MD0408:ValidationFraction = 1.0|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, {|MD0408:GradientClipNorm = -1|}")]
    [InlineData("Loss.CrossEntropy, {|MD0408:(Optimizer)7|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, {|MD0408:FeatureScale = 0|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, {|MD0418:GradientAccumulation = 0|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.SGD, BatchSize = 16, {|MD0418:GradientAccumulation = -2|}")]
    public void InvalidValue_IsAnErrorOnItsArgument(string arguments) => VerifyTrain(arguments);

    [Fact]
    public void CsvLayout_HeaderAndLabelColumn_GoIntoThePlan_OnlyWhenWritten()
    {
        var run = VerifyTrain("Loss.CrossEntropy, Optimizer.Adam, Header = true, LabelColumn = \"label\"");
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        var source = run.Source("M.Train.g.cs");
        Assert.Contains("Header = true,", source);
        Assert.Contains("LabelColumn = \"label\",", source);

        var detected = VerifyTrain("Loss.CrossEntropy, Optimizer.Adam").Source("M.Train.g.cs");
        Assert.DoesNotContain("Header =", detected);
        Assert.DoesNotContain("LabelColumn =", detected);
        Assert.Contains("Header = false,", VerifyTrain("Loss.CrossEntropy, Optimizer.Adam, Header = false").Source("M.Train.g.cs"));
    }

    [Theory]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, {|MD0411:LabelColumn = \"\"|}", "LabelColumn is empty")]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, {|MD0411:LabelColumn = \"a,b\"|}", "contains ','")]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, Header = true, {|MD0411:LabelColumn = \" label\"|}", "has spaces around it")]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, LabelColumn = \"label\", {|MD0412:Header = false|}", "Header = false declares that the first row is data")]
    public void CsvLayout_Mistakes_AreErrorsOnTheArgument(string arguments, string message) =>
        Assert.Contains(message, VerifyTrain(arguments).ModelDiagnostics.Single().GetMessage());

    [Fact]
    public void BCEWithLogitsOnTenClasses_ReportsMD0404_OnTheLoss() => VerifyTrain("{|MD0404:Loss.BCEWithLogits|}, Optimizer.Adam");

    [Fact]
    public void MseOnTenOutputs_ReportsMD0404() => VerifyTrain("{|MD0404:Loss.MSE|}, Optimizer.Adam");

    [Fact]
    public void CrossEntropyOnOneOutput_ReportsMD0404() => VerifyTrain("{|MD0404:Loss.CrossEntropy|}, Optimizer.Adam",
        "{ [Linear(1)] public partial Linear Output { get; } }");

    /// <summary>
    /// Every loss against the outputs it can and cannot train on, given one label per data row (targets (B)). Each
    /// verdict is what libtorch does with those targets (LossOracleTests in the runtime tests checks the rule itself
    /// against libtorch).
    /// </summary>
    [Theory]
    // CrossEntropy / NLL: class scores (B, C) only; (B, C, d1, ...) would need a label per position.
    [InlineData("CrossEntropy", "B, 1, 8, 8", "[Conv2d(3, 3, Padding = 1)] public partial Conv2d C { get; } [MaxPool2d(2)] public partial MaxPool2d P { get; }", false)]
    [InlineData("NLL", "B, 1, 8, 8", "[Conv2d(3, 3, Padding = 1)] public partial Conv2d C { get; } [LogSoftmax(1)] public partial LogSoftmax S { get; }", false)]
    [InlineData("CrossEntropy", "B, 4, 10", "[Conv1d(3, 3)] public partial Conv1d C { get; }", false)]
    [InlineData("NLL", "B, 4, 10", "[Linear(5)] public partial Linear L { get; } [LogSoftmax(-1)] public partial LogSoftmax S { get; }", false)]
    [InlineData("CrossEntropy", "B", "[Tanh] public partial Tanh T { get; }", false)]
    [InlineData("NLL", "B", "[LogSoftmax(0)] public partial LogSoftmax S { get; }", false)]
    [InlineData("CrossEntropy", "B, 4, 8", "[Linear(10)] public partial Linear L { get; } [Flatten(StartDim = 0, EndDim = 1)] public partial Flatten F { get; }", false)]
    [InlineData("CrossEntropy", "B, 1, 8, 8", "[Conv2d(3, 3)] public partial Conv2d C { get; } [AdaptiveAvgPool2d(1)] public partial AdaptiveAvgPool2d P { get; } [Flatten] public partial Flatten F { get; }", true)]
    [InlineData("NLL", "B, 64", "[Linear(10)] public partial Linear L { get; } [LogSoftmax(1)] public partial LogSoftmax S { get; }", true)]
    // MSE / BCEWithLogits: the (B) targets are reshaped to the output, so exactly one value per sample.
    [InlineData("MSE", "B, 64", "[Linear(1)] public partial Linear L { get; }", true)]
    [InlineData("MSE", "B", "[Tanh] public partial Tanh T { get; }", true)]
    [InlineData("MSE", "B, 1, 2, 2", "[Conv2d(1, 2)] public partial Conv2d C { get; }", true)]
    [InlineData("MSE", "B, 2, 3", "[Linear(1)] public partial Linear L { get; }", false)]
    [InlineData("MSE", "B, 1, 8, 8", "[Conv2d(1, 3, Padding = 1)] public partial Conv2d C { get; }", false)]
    [InlineData("BCEWithLogits", "B, 1, 2, 2", "[Conv2d(1, 2)] public partial Conv2d C { get; }", true)]
    [InlineData("BCEWithLogits", "B, 1, 5", "[Linear(1)] public partial Linear L { get; }", true)]
    [InlineData("BCEWithLogits", "B, 3, 4", "[Linear(1)] public partial Linear L { get; }", false)]
    [InlineData("BCEWithLogits", "B, 2, 4", "[Linear(1)] public partial Linear L { get; } [Flatten(StartDim = 0, EndDim = 1)] public partial Flatten F { get; }", false)]
    [InlineData("MSE", "B, 2, 4", "[Linear(1)] public partial Linear L { get; } [Flatten(StartDim = 0)] public partial Flatten F { get; }", false)]
    public void LossAgainstOutputShape_ReportsMD0404_ExactlyWhenTheTargetsCannotFit(string loss, string input, string layers, bool fits)
    {
        var lossArgument = fits ? "Loss." + loss : "{|MD0404:Loss." + loss + "|}";
        var run = VerifyTrain(lossArgument + ", Optimizer.Adam", "{ " + layers + " }", input);
        if (fits) Assert.Contains("Loss = global::ModelDsl.Loss." + loss + ",", run.Source("M.Train.g.cs"));
    }

    [Fact]
    public void LossOnIntegerOutput_ReportsMD0404() => Markup.Verify("""
        [Model(Input = "B, 1", InputType = DType.Int64)]
        [Train({|MD0404:Loss.MSE|}, Optimizer.Adam)]
        public partial class M { [Identity] public partial Identity Id { get; } }
        """);

    [Fact]
    public void CrossEntropyOnSpatialOutput_SaysWhyAndWhatToDo()
    {
        var run = VerifyTrain("{|MD0404:Loss.CrossEntropy|}, Optimizer.Adam",
            "{ [Conv2d(3, 3, Padding = 1)] public partial Conv2d C { get; } [MaxPool2d(2)] public partial MaxPool2d P { get; } }", "B, 1, 8, 8");
        var message = run.ModelDiagnostics.Single().GetMessage();
        Assert.Contains("(B, 3, 4, 4)", message);
        Assert.Contains("one label per row", message);
        Assert.Contains("[Flatten]", message);
    }

    [Fact]
    public void BCEWithLogitsOnOneLogit_IsFine() => VerifyTrain("Loss.BCEWithLogits, Optimizer.Adam",
        "{ [Linear(1)] public partial Linear Output { get; } }");

    [Theory]
    [InlineData("{|MD0407:Loss.CrossEntropy|}, Optimizer.Adam", "[Softmax(1)] public partial Softmax P { get; }")]
    [InlineData("{|MD0407:Loss.NLL|}, Optimizer.Adam", "")]
    [InlineData("Loss.NLL, Optimizer.Adam", "[LogSoftmax(1)] public partial LogSoftmax P { get; }")]
    public void LastLayerThatDoesNotSuitTheLoss_WarnsMD0407(string arguments, string lastLayer)
    {
        var run = VerifyTrain(arguments, "{ [Linear(10)] public partial Linear Output { get; } " + lastLayer + " }");
        Assert.All(run.ModelDiagnostics, d => Assert.Equal(DiagnosticSeverity.Warning, d.Severity));
    }

    [Theory]
    // Nothing runs in bfloat16: convolutions and norms stay float32, the rest runs in its input's dtype.
    [InlineData("{|MD0419:Precision = Precision.BFloat16|}", "B, 1, 8, 8",
        "{ [Conv2d(4, 3)] public partial Conv2d Conv { get; } [BatchNorm2d] public partial BatchNorm2d Norm { get; } [Flatten] public partial Flatten Flat { get; } }")]
    [InlineData("{|MD0419:Precision = Precision.BFloat16|}", "B, 64", "{ [ReLU] public partial ReLU Act { get; } }")]
    // A Linear layer, a TransformerBlock or a composed model (whose layers are its own) may run in bfloat16: no warning.
    [InlineData("Precision = Precision.BFloat16", "B, 64", Mlp)]
    [InlineData("Precision = Precision.Float32", "B, 64", "{ [ReLU] public partial ReLU Act { get; } }")]
    public void BFloat16WithoutALayerThatRunsInIt_WarnsMD0419_OnThePrecision(string precision, string input, string layers)
    {
        var run = VerifyTrain("Loss.CrossEntropy, Optimizer.Adam, " + precision, layers, input);
        Assert.All(run.ModelDiagnostics, d => Assert.Equal(DiagnosticSeverity.Warning, d.Severity));
    }

    [Theory]
    // Nothing to recompute: an MLP, convolutions.
    [InlineData("{|MD0420:Recompute = Recompute.Blocks|}", "B, 64", Mlp)]
    [InlineData("{|MD0420:Recompute = Recompute.Blocks|}", "B, 1, 8, 8", "{ [Conv2d(4, 3)] public partial Conv2d Conv { get; } [Flatten] public partial Flatten Flat { get; } }")]
    // A TransformerBlock is a block; Recompute.None never reports.
    [InlineData("Recompute = Recompute.Blocks", "B, 8, 16", "{ [TransformerBlock(Heads = 2, Repeat = 2)] public partial TransformerBlock Blocks { get; } [Flatten] public partial Flatten Flat { get; } [Linear(4)] public partial Linear Head { get; } }")]
    [InlineData("Recompute = Recompute.None", "B, 64", Mlp)]
    public void RecomputeWithoutABlock_ReportsMD0420_OnTheRecompute(string recompute, string input, string layers) =>
        VerifyTrain("Loss.CrossEntropy, Optimizer.Adam, " + recompute, layers, input);

    [Fact]
    public void RecomputeOnAComposedBlock_ReportsNothing() => Markup.Verify("""
        [Model(Input = "B, 16")]
        public partial class Inner
        {
            [Linear(16)] public partial Linear Up { get; }
            [ReLU]       public partial ReLU Act { get; }
        }

        [Model(Input = "B, 16")]
        [Train(Loss.CrossEntropy, Optimizer.Adam, Recompute = Recompute.Blocks)]
        public partial class Outer
        {
            [Block(Repeat = 2)] public partial Inner Body { get; }
            [Linear(4)]         public partial Linear Head { get; }
        }
        """);

    [Fact]
    public void RecomputeOutsideTheEnum_ReportsMD0408() =>
        VerifyTrain("Loss.CrossEntropy, Optimizer.Adam, {|MD0408:Recompute = (Recompute)5|}");

    [Fact]
    public void PrecisionOutsideTheEnum_ReportsMD0408() =>
        VerifyTrain("Loss.CrossEntropy, Optimizer.Adam, {|MD0408:Precision = (Precision)2|}");

    [Fact]
    public void TrainWithoutModel_ReportsMD0410() => Markup.Verify("""
        [{|MD0410:Train(Loss.MSE, Optimizer.SGD)|}]
        public partial class NotAModel { }
        """);

    [Theory]
    [InlineData("[Train]")]
    [InlineData("[Train((Loss)99, (Optimizer)(-1), Schedule = (Schedule)42)]")]
    [InlineData("[Train(Loss.MSE, Optimizer.SGD, LearningRate = double.NaN, Epochs = int.MinValue, BatchSize = int.MaxValue, Gamma = double.NegativeInfinity)]")]
    [InlineData("[Train(Loss.CrossEntropy, Optimizer.Adam, Data = null, TestData = \"\\\"\\n\")]")]
    [InlineData("[Train(Loss.CrossEntropy, Optimizer.Adam)]\n[Train(Loss.MSE, Optimizer.SGD)]")]
    public void HostileTrainDeclarations_NeverCrashTheGenerator(string train)
    {
        foreach (var body in new[] { Mlp, "{ [Linear(0)] public partial Linear L { get; } }", "{ }" })
            GeneratorHarness.Run(GeneratorHarness.Usings + $"[Model(Input = \"B, 64\")]\n{train}\npublic partial class M\n{body}").AssertNoGeneratorCrash();
    }

    [Fact]
    public void SymbolicSampleDims_ReportMD0409() => Markup.Verify("""
        [Model(Input = "B, T", InputType = DType.Int64)]
        [{|MD0409:Train(Loss.CrossEntropy, Optimizer.Adam)|}]
        public partial class M
        {
            [Embedding(10, 4)] public partial Embedding E { get; }
            [Flatten]          public partial Flatten F { get; }
            [Linear(16, 10)]   public partial Linear L { get; }
        }
        """);
}
