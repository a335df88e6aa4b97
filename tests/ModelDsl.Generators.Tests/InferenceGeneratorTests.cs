namespace ModelDsl.Generators.Tests;

/// <summary>Generated Load/Signature/Predict/PredictProba, and the EarlyStoppingPatience setting of [Train].</summary>
public class InferenceGeneratorTests
{
    private const string Mlp = """
        {
            [Linear(32)] public partial Linear Hidden { get; }
            [ReLU]       public partial ReLU Act { get; }
            [Linear(10)] public partial Linear Output { get; }
        }
        """;

    [Theory]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, {|MD0408:EarlyStoppingPatience = -1|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.Adam, ValidationFraction = 0, {|MD0408:EarlyStoppingPatience = 3|}")]
    public void BadPatience_IsMD0408_OnTheArgument(string arguments) =>
        Markup.Verify($"[Model(Input = \"B, 64\")]\n[Train({arguments})]\npublic partial class M\n{Mlp}");

    [Fact]
    public void Patience_GoesIntoThePlan_AndLeftOutStaysUnset()
    {
        var run = Markup.Verify($"[Model(Input = \"B, 64\")]\n[Train(Loss.CrossEntropy, Optimizer.Adam, EarlyStoppingPatience = 4)]\npublic partial class M\n{Mlp}");
        Assert.Contains("    EarlyStoppingPatience = 4,", run.Source("M.Train.g.cs"));
        // The plan carries what the model declares, an explicit 0 included; left out, the runtime's default (off) applies.
        var zero = Markup.Verify($"[Model(Input = \"B, 64\")]\n[Train(Loss.CrossEntropy, Optimizer.Adam, EarlyStoppingPatience = 0)]\npublic partial class M\n{Mlp}");
        Assert.Contains("    EarlyStoppingPatience = 0,", zero.Source("M.Train.g.cs"));
        var none = Markup.Verify($"[Model(Input = \"B, 64\")]\n[Train(Loss.CrossEntropy, Optimizer.Adam)]\npublic partial class M\n{Mlp}");
        Assert.DoesNotContain("EarlyStoppingPatience", none.Source("M.Train.g.cs"));
    }

    [Fact]
    public void Classifier_GetsLoadPredictAndPredictProba_ThatCompile()
    {
        var run = Markup.Verify($"[Model(Input = \"B, 64\")]\n[Train(Loss.NLL, Optimizer.Adam)]\npublic partial class M\n" +
                                "{ [Linear(10)] public partial Linear Output { get; } [LogSoftmax(1)] public partial LogSoftmax P { get; } }");
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        var source = run.Source("M.Inference.g.cs");
        Assert.Contains("output: global::ModelDsl.Runtime.Inference.ModelOutput.ClassLogProbabilities);", source);
        Assert.Contains("public static M Load(string path) => global::ModelDsl.Runtime.Inference.ModelLoader.Load(path, static () => new M(), \"M\");", source);
        Assert.Contains(" PredictProba(", source);
    }

    [Fact]
    public void ModelWithoutTrain_GetsPredictButNoPredictProba()
    {
        var run = Markup.Verify($"[Model(Input = \"B, T, 64\")]\npublic partial class M\n{Mlp}");
        var source = run.Source("M.Inference.g.cs");
        Assert.Contains("ModelOutput.Values", source);
        Assert.Contains(" Predict(", source);
        Assert.DoesNotContain("PredictProba", source);
    }

    [Fact]
    public void WithoutTheRuntime_NothingCallsIt()
    {
        var run = GeneratorHarness.Run(GeneratorHarness.CompileWithoutRuntime(GeneratorHarness.Usings + $"[Model(Input = \"B, 64\")]\npublic partial class M\n{Mlp}"));
        Assert.DoesNotContain(run.Result.GeneratedTrees, t => t.FilePath.EndsWith("M.Inference.g.cs", StringComparison.Ordinal));
        Assert.Empty(run.CompilerDiagnostics);
    }

    [Fact]
    public void ModelWithErrors_StillLetsCallsToLoadAndPredictCompile()
    {
        var (source, _) = Markup.Parse(GeneratorHarness.Usings +
            "public static class Program { public static object Use() => M.Load(\"x\").Predict(null!); }\n" +
            "[Model(Input = \"B, 64\")]\npublic partial class M { [Linear({|MD0101:32|}, 10)] public partial Linear L { get; } }");
        var run = GeneratorHarness.Run(source);
        Assert.Contains(run.ModelDiagnostics, d => d.Id == "MD0101");
        Assert.DoesNotContain(run.CompilerDiagnostics, d => d.Severity == Microsoft.CodeAnalysis.DiagnosticSeverity.Error);
    }

    [Fact]
    public void InferenceSnapshot() =>
        Snapshot.Match("DigitsCnn.Inference", GeneratorHarness.Run(GeneratorHarness.Usings + """
            namespace Samples.Digits;
            [Model(Input = "B, 1, 8, 8")]
            [Train(Loss.CrossEntropy, Optimizer.AdamW, EarlyStoppingPatience = 3)]
            public partial class DigitsCnn
            {
                [Conv2d(8, 3, Padding = 1)] public partial Conv2d Conv1 { get; }
                [ReLU]                      public partial ReLU Act1 { get; }
                [Flatten]                   public partial Flatten Flat { get; }
                [Linear(10)]                public partial Linear Output { get; }
            }
            """).Source("DigitsCnn.Inference.g.cs"));
}
