using Microsoft.CodeAnalysis;

namespace ModelDsl.Generators.Tests;

/// <summary>[Loss]: the custom loss method, every MD0414–MD0416 by id and span, and the generated plan that carries it.</summary>
public class LossDiagnosticTests
{
    private const string Header = "using TorchSharp;\nusing static TorchSharp.torch;\n";

    private const string Layers = """
            [Linear(32)] public partial Linear Hidden { get; }
            [ReLU]       public partial ReLU Act { get; }
            [Linear(10)] public partial Linear Output { get; }
        """;

    /// <summary>A [Train] model with <paramref name="members"/> beside its layers.</summary>
    private static GeneratorRun VerifyModel(string members, string train = "[Train(Loss.CrossEntropy, Optimizer.Adam, Data = \"train.csv\")]\n") =>
        Markup.Verify(Header + $"[Model(Input = \"B, 64\")]\n{train}public partial class M\n{{\n{Layers}\n{members}\n}}");

    [Fact]
    public void ValidLossMethod_GoesIntoThePlan_AndTheTrainerCompiles()
    {
        var run = VerifyModel("[Loss] static Tensor Smoothed(Tensor output, Tensor target) => nn.functional.cross_entropy(output, target, label_smoothing: 0.1);");
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        var source = run.Source("M.Train.g.cs");
        Assert.Contains("Loss = global::ModelDsl.Loss.CrossEntropy,", source);
        Assert.Contains("LossMethod = \"Smoothed\",", source);
        Assert.Contains("CustomLoss = static (output, target) => M.Smoothed(output, target),", source);
    }

    [Fact]
    public void WithoutALossMethod_ThePlanHasNoCustomLoss()
    {
        var run = VerifyModel("static Tensor NotMarked(Tensor output, Tensor target) => output.sum();");
        Assert.DoesNotContain("CustomLoss", run.Source("M.Train.g.cs"));
    }

    [Fact]
    public void MethodNamedLoss_AsTheIssueWritesIt_Compiles()
    {
        // The method's name is the enum's. Inside the class (its attributes included) C# binds 'Loss' to the method, so
        // [Train] names the enum in full; the generated plan must still bind to each.
        var run = Markup.Verify(Header + """
            [Model(Input = "B, 64")]
            [Train(ModelDsl.Loss.MSE, Optimizer.SGD)]
            public partial class M
            {
                [Linear(1)] public partial Linear Output { get; }
                [Loss] private static Tensor Loss(Tensor output, Tensor target) => (output - target.reshape(output.shape)).abs().mean();
            }
            """);
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        Assert.Contains("CustomLoss = static (output, target) => M.Loss(output, target),", run.Source("M.Train.g.cs"));
    }

    [Fact]
    public void LossMethod_WithAnOutputOfTenAndMSE_StillReportsMD0404() =>
        // The declared loss still describes the targets: one float per sample does not fit ten outputs.
        Markup.Verify(Header + """
            [Model(Input = "B, 64")]
            [Train({|MD0404:Loss.MSE|}, Optimizer.SGD)]
            public partial class M
            {
                [Linear(10)] public partial Linear Output { get; }
                [Loss] static Tensor Huber(Tensor output, Tensor target) => nn.functional.huber_loss(output, target);
            }
            """);

    [Theory]
    [InlineData("[Loss] Tensor {|MD0414:Instance|}(Tensor output, Tensor target) => output.sum();")]
    [InlineData("[Loss] static {|MD0414:float|} Scalar(Tensor output, Tensor target) => 0f;")]
    [InlineData("[Loss] static {|MD0414:void|} Nothing(Tensor output, Tensor target) { }")]
    [InlineData("[Loss] static Tensor One{|MD0414:(Tensor output)|} => output.sum();")]
    [InlineData("[Loss] static Tensor Three{|MD0414:(Tensor output, Tensor target, Tensor weight)|} => output.sum();")]
    [InlineData("[Loss] static Tensor Labels(Tensor output, {|MD0414:long[]|} target) => output.sum();")]
    [InlineData("[Loss] static Tensor Out(Tensor output, {|MD0414:out Tensor target|}) { target = output; return output.sum(); }")]
    [InlineData("[Loss] static Tensor Generic{|MD0414:<T>|}(Tensor output, Tensor target) => output.sum();")]
    public void WrongSignature_ReportsMD0414_OnWhatIsWrong(string member) => VerifyModel(member);

    [Fact]
    public void WrongSignature_SaysWhatTheSignatureMustBe()
    {
        var run = VerifyModel("[Loss] static Tensor One{|MD0414:(Tensor output)|} => output.sum();");
        Assert.Equal("The [Loss] method 'One' must be 'static Tensor One(Tensor output, Tensor target)': it takes 1 parameter",
            run.ModelDiagnostics.Single().GetMessage());
        Assert.Equal(DiagnosticSeverity.Error, run.ModelDiagnostics.Single().Severity);
    }

    [Fact]
    public void WrongSignature_LeavesTheDeclaredLossInThePlan() =>
        Assert.DoesNotContain("CustomLoss", VerifyModel("[Loss] Tensor {|MD0414:Instance|}(Tensor output, Tensor target) => output.sum();").Source("M.Train.g.cs"));

    [Fact]
    public void TwoLossMethods_ReportMD0415_OnTheSecond()
    {
        var run = VerifyModel("""
            [Loss] static Tensor First(Tensor output, Tensor target) => output.sum();
            [{|MD0415:Loss|}] static Tensor Second(Tensor output, Tensor target) => output.sum();
            """);
        Assert.Contains("'M' already trains with the [Loss] method 'First'", run.ModelDiagnostics.Single().GetMessage());
        Assert.DoesNotContain("CustomLoss", run.Source("M.Train.g.cs"));
    }

    [Fact]
    public void LossOnAModelWithoutTrain_ReportsMD0416() => Markup.Verify(Header + """
        [Model(Input = "B, 64")]
        public partial class M
        {
            [Linear(10)] public partial Linear Output { get; }
            [{|MD0416:Loss|}] static Tensor Custom(Tensor output, Tensor target) => output.sum();
        }
        """);

    [Fact]
    public void LossOnAPlainClass_ReportsMD0416() => Markup.Verify(Header + """
        public static class Losses
        {
            [{|MD0416:Loss|}] public static Tensor Custom(Tensor output, Tensor target) => output.sum();
        }
        """);

    [Theory]
    [InlineData("[Loss] static Tensor L(Tensor output, Tensor target) => output.sum();\n[Loss] static Tensor L(Tensor output) => output.sum();")]
    [InlineData("[Loss] static Tensor L(__arglist) => null!;")]
    [InlineData("[Loss] static extern Tensor L(Tensor output, Tensor target);")]
    [InlineData("[Loss] static Tensor L(Tensor output, Tensor target, params Tensor[] more) => output.sum();")]
    [InlineData("[Loss] static Missing L(Missing output, Tensor target) => null!;")]
    [InlineData("[Loss] Tensor L;")]
    public void HostileLossDeclarations_NeverCrashTheGenerator(string member) =>
        GeneratorHarness.Run(GeneratorHarness.Usings + Header + $"[Model(Input = \"B, 64\")]\n[Train(Loss.CrossEntropy, Optimizer.Adam)]\npublic partial class M\n{{\n{Layers}\n{member}\n}}").AssertNoGeneratorCrash();

    [Fact]
    public void LossTrainerSnapshot() =>
        Snapshot.Match("SmoothedMlp.Train", GeneratorHarness.Run(GeneratorHarness.Usings + Header + """
            namespace Samples.Digits;
            [Model(Input = "B, 64")]
            [Train(Loss.CrossEntropy, Optimizer.Adam, Epochs = 5, Data = "data/optdigits.tra")]
            public partial class SmoothedMlp
            {
                [Linear(128)] public partial Linear Hidden { get; }
                [ReLU]        public partial ReLU Act { get; }
                [Linear(10)]  public partial Linear Output { get; }

                /// <summary>Cross-entropy with label smoothing 0.1.</summary>
                [Loss]
                static Tensor Smoothed(Tensor output, Tensor target) => nn.functional.cross_entropy(output, target, label_smoothing: 0.1);
            }
            """).Source("SmoothedMlp.Train.g.cs"));
}
