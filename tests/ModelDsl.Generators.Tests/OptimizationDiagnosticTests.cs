namespace ModelDsl.Generators.Tests;

/// <summary>[Prune] and [Quantize]: every MD03xx diagnostic by id and span, and the generated passes.</summary>
public class OptimizationDiagnosticTests
{
    // Hidden: 64·32 + 32 = 2,080 parameters (2,048 weights); Output: 32·10 + 10 = 330.
    private const string Mlp = """
        {
            [Linear(32)] public partial Linear Hidden { get; }
            [ReLU]       public partial ReLU Act { get; }
            [Linear(10)] public partial Linear Output { get; }
        }
        """;

    private const string Train = "[Train(Loss.CrossEntropy, Optimizer.SGD, Data = \"train.csv\")]\n";

    private static GeneratorRun VerifyPasses(string attributes, string layers = Mlp, string train = Train) =>
        Markup.Verify($"[Model(Input = \"B, 64\")]\n{train}{attributes}\npublic partial class M\n{layers}");

    [Fact]
    public void PruneThenQuantize_GoesIntoThePlan_InDeclarationOrder()
    {
        var run = VerifyPasses("[Prune(PruneMethod.L1Unstructured, 0.5, Targets = new[] { \"Hidden\", \"Output\" }, FineTuneEpochs = 2)]\n[Prune(PruneMethod.LnStructured, 3, Targets = new[] { \"Hidden\" }, N = 1, Dim = 0)]\n[Quantize(QuantizeMode.DynamicInt8)]");
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        var source = run.Source("M.Train.g.cs");
        int first = source.IndexOf("PrunePass(global::ModelDsl.PruneMethod.L1Unstructured, global::ModelDsl.Runtime.Pruning.PruneAmount.Of(0.5), new string[] { \"Hidden\", \"Output\" }, N: 2.0, Dim: -1, FineTuneEpochs: 2)", StringComparison.Ordinal);
        int second = source.IndexOf("PrunePass(global::ModelDsl.PruneMethod.LnStructured, global::ModelDsl.Runtime.Pruning.PruneAmount.Of(3), new string[] { \"Hidden\" }, N: 1.0, Dim: 0, FineTuneEpochs: 0)", StringComparison.Ordinal);
        int third = source.IndexOf("QuantizePass(global::ModelDsl.QuantizeMode.DynamicInt8)", StringComparison.Ordinal);
        Assert.True(first > 0 && second > first && third > second, source);
        Assert.Contains("ParametersAfterPasses = 2410,", source);
    }

    [Fact]
    public void StructuredPruning_ShrinksTheTargetAndItsConsumer_AtCompileTime()
    {
        // Half of Hidden's 32 neurons go: Hidden 64·16 + 16 = 1,040, Output 16·10 + 10 = 170.
        var run = VerifyPasses("[Prune(PruneMethod.Structured, 0.5, Targets = new[] { \"Hidden\" })]");
        Assert.Contains("ParametersAfterPasses = 1210,", run.Source("M.Train.g.cs"));
    }

    [Fact]
    public void StructuredPruningOfConvolutions_ShrinksTheBatchNormAndTheNextConvolution()
    {
        // C1: 8·1·3·3 + 8 = 80 → 4 channels: 40; Bn: 16 → 8; C2: 16·8·9 + 16 = 1,168 → 16·4·9 + 16 = 592; Head: 16·10 + 10 = 170.
        const string cnn = """
            {
                [Conv2d(8, 3, Padding = 1)]  public partial Conv2d C1 { get; }
                [BatchNorm2d]                public partial BatchNorm2d Bn { get; }
                [ReLU]                       public partial ReLU Act { get; }
                [MaxPool2d(2)]               public partial MaxPool2d Pool { get; }
                [Conv2d(16, 3)]              public partial Conv2d C2 { get; }
                [AdaptiveAvgPool2d(1)]       public partial AdaptiveAvgPool2d Gap { get; }
                [Flatten]                    public partial Flatten Flat { get; }
                [Linear(10)]                 public partial Linear Head { get; }
            }
            """;
        var run = Markup.Verify($"[Model(Input = \"B, 1, 8, 8\")]\n{Train}[Prune(PruneMethod.Structured, 4, Targets = new[] {{ \"C1\" }})]\npublic partial class M\n{cnn}");
        Assert.Contains("ParametersAfterPasses = 810,", run.Source("M.Train.g.cs"));
    }

    [Theory]
    [InlineData("[Prune(PruneMethod.L1Unstructured, {|MD0301:1.5|}, Targets = new[] { \"Hidden\" })]")]
    [InlineData("[Prune(PruneMethod.L1Unstructured, {|MD0301:-1|}, Targets = new[] { \"Hidden\" })]")]
    [InlineData("[Prune(PruneMethod.L1Unstructured, {|MD0301:2049|}, Targets = new[] { \"Hidden\" })]")]
    [InlineData("[Prune(PruneMethod.LnStructured, {|MD0301:33|}, Targets = new[] { \"Hidden\" }, Dim = 0)]")]
    [InlineData("[Prune(PruneMethod.GlobalL1Unstructured, {|MD0301:2369|}, Targets = new[] { \"Hidden\", \"Output\" })]")]
    [InlineData("[Prune(PruneMethod.L1Unstructured, 0.5, {|MD0302:Targets = new[] { \"Missing\" }|})]")]
    [InlineData("[Prune(PruneMethod.L1Unstructured, 0.5, {|MD0302:Targets = new[] { \"Act\" }|})]")]
    [InlineData("[Prune(PruneMethod.L1Unstructured, 0.5, {|MD0303:Targets = new string[0]|})]")]
    [InlineData("[Quantize(QuantizeMode.DynamicInt8)]\n[{|MD0304:Prune(PruneMethod.L1Unstructured, 0.5, Targets = new[] { \"Hidden\" })|}]")]
    [InlineData("[Prune(PruneMethod.Structured, 0.5, {|MD0029:Targets = new[] { \"Output\" }|})]")]
    [InlineData("[Prune(PruneMethod.LnStructured, 0.5, Targets = new[] { \"Hidden\" }, {|MD0306:Dim = 2|})]")]
    [InlineData("[Prune(PruneMethod.L1Unstructured, 0.5, Targets = new[] { \"Hidden\" }, {|MD0307:FineTuneEpochs = -1|})]")]
    public void BadPlans_AreReportedWhereTheyAreWritten(string attributes) => VerifyPasses(attributes);

    [Theory]
    [InlineData("[Quantize({|MD0307:(QuantizeMode)9|})]", "(QuantizeMode)9 is not a QuantizeMode")]
    [InlineData("[Prune({|MD0307:(PruneMethod)17|}, 0.5, Targets = new[] { \"Hidden\" })]", "(PruneMethod)17 is not a PruneMethod")]
    public void EnumValuesThatNameNoMember_AreReportedWithTheEnumsName(string attributes, string message) =>
        Assert.Equal(message, Assert.Single(VerifyPasses(attributes).ModelDiagnostics).GetMessage());

    [Fact]
    public void PruneWithoutTargets_ReportsMD0303_OnTheAttribute() =>
        VerifyPasses("[{|MD0303:Prune(PruneMethod.GlobalL1Unstructured, 0.2)|}]");

    [Fact]
    public void PassWithoutTrain_ReportsMD0308() =>
        VerifyPasses("[{|MD0308:Quantize(QuantizeMode.DynamicInt8)|}]", train: "");

    [Fact]
    public void QuantizeWithoutLinearLayers_WarnsMD0309() =>
        Markup.Verify("[Model(Input = \"B, 1\")]\n[Train(Loss.MSE, Optimizer.SGD, Data = \"t.csv\")]\n[{|MD0309:Quantize(QuantizeMode.DynamicInt8)|}]\npublic partial class M\n{ [ReLU] public partial ReLU Act { get; } }");

    [Fact]
    public void StructuredPruningThroughFlatten_RemovesEachChannelsRunOfLinearInputs()
    {
        // C: 4·1·9 + 4 = 40 → 2 channels: 20; O reads 4·4·4 = 64 inputs → 2·16 = 32: 64·10 + 10 = 650 → 330.
        var run = Markup.Verify("[Model(Input = \"B, 1, 4, 4\")]\n" + Train + "[Prune(PruneMethod.Structured, 0.5, Targets = new[] { \"C\" })]\npublic partial class M\n{ [Conv2d(4, 3, Padding = 1)] public partial Conv2d C { get; } [Flatten] public partial Flatten F { get; } [Linear(10)] public partial Linear O { get; } }");
        Assert.Contains("ParametersAfterPasses = 350,", run.Source("M.Train.g.cs"));
    }

    [Fact]
    public void StructuredPruningIntoLayerNorm_SaysTheConsumerCannotBeRewritten()
    {
        var run = Markup.Verify("[Model(Input = \"B, 8\")]\n" + Train + "[Prune(PruneMethod.Structured, 0.5, {|MD0305:Targets = new[] { \"L\" }|})]\npublic partial class M\n{ [Linear(6)] public partial Linear L { get; } [LayerNorm] public partial LayerNorm N { get; } [Linear(10)] public partial Linear O { get; } }");
        Assert.Contains("'N' (LayerNorm)", Assert.Single(run.ModelDiagnostics).GetMessage());
    }

    [Fact]
    public void StructuredPruningThroughPoolingAndDropout_RoundsAFractionHalfToEven()
    {
        // C: 6 channels, a quarter is 1.5 → 2 (half to even); C 6·9 + 6 = 60 → 40, N 12 → 8, O 24·3 + 3 = 75 → 51.
        var run = Markup.Verify("[Model(Input = \"B, 1, 4, 4\")]\n" + Train + "[Prune(PruneMethod.Structured, 0.25, Targets = new[] { \"C\" })]\npublic partial class M\n{ [Conv2d(6, 3, Padding = 1)] public partial Conv2d C { get; } [BatchNorm2d] public partial BatchNorm2d N { get; } [ReLU] public partial ReLU A { get; } [MaxPool2d(2)] public partial MaxPool2d P { get; } [Flatten] public partial Flatten F { get; } [Dropout(0.1)] public partial Dropout D { get; } [Linear(3)] public partial Linear O { get; } }");
        Assert.Contains("ParametersAfterPasses = 99,", run.Source("M.Train.g.cs"));
    }

    [Fact]
    public void StructuredPruningThroughTwoBatchNorms_ShrinksBoth()
    {
        // Both BatchNorms are in C's group: C 40 → 20, N1 8 → 4, N2 8 → 4, O 2·4 + 2 = 10 → 6, L 99: 165 → 133.
        var run = Markup.Verify("[Model(Input = \"B, 1, 4, 4\")]\n" + Train + "[Prune(PruneMethod.Structured, 0.5, Targets = new[] { \"C\" })]\npublic partial class M\n{ [Conv2d(4, 3, Padding = 1)] public partial Conv2d C { get; } [BatchNorm2d] public partial BatchNorm2d N1 { get; } [BatchNorm2d] public partial BatchNorm2d N2 { get; } [Conv2d(2, 1)] public partial Conv2d O { get; } [Flatten] public partial Flatten F { get; } [Linear(3)] public partial Linear L { get; } }");
        Assert.Contains("ParametersAfterPasses = 133,", run.Source("M.Train.g.cs"));
    }

    private const string HiddenAsField = """
        {
            [Linear(32)] private readonly Linear hidden = null!;
            [ReLU]       public partial ReLU Act { get; }
            [Linear(10)] public partial Linear Output { get; }
        }
        """;

    [Fact]
    public void QuantizeWithALinearDeclaredAsAField_ReportsMD0310_OnTheAttribute()
    {
        // The pass swaps layers through ReplaceLayer, which a field cannot take (it failed after training).
        var run = VerifyPasses("[{|MD0310:Quantize(QuantizeMode.DynamicInt8)|}]", HiddenAsField);
        Assert.Equal("[Quantize] replaces every Linear layer with an int8 one, but 'hidden' is declared as a field, which the pass cannot replace; declare it as a partial property: 'public partial Linear hidden { get; }'",
            run.ModelDiagnostics.Single().GetMessage());
    }

    [Fact]
    public void StructuredCutOfALayerDeclaredAsAField_ReportsMD0305() => VerifyPasses(
        "[Prune(PruneMethod.Structured, 0.5, {|MD0305:Targets = new[] { \"hidden\" }|})]", HiddenAsField);

    [Fact]
    public void UnstructuredPruningOfAField_StaysAllowed() => VerifyPasses(
        "[Prune(PruneMethod.L1Unstructured, 0.5, Targets = new[] { \"hidden\" })]", HiddenAsField);
}

/// <summary>[Quantize(QuantizeMode.StaticInt8)]: its plan entry and MD0311–MD0314 by id and span.</summary>
public class StaticQuantizeDiagnosticTests
{
    private const string Cnn = "{ [Conv2d(4, 3)] public partial Conv2d C { get; } [ReLU] public partial ReLU A { get; } [Flatten] public partial Flatten F { get; } [Linear(10)] public partial Linear O { get; } }";
    private const string Train = "[Train(Loss.CrossEntropy, Optimizer.SGD, Data = \"train.csv\")]\n";

    private static GeneratorRun Verify(string attributes, string layers = Cnn, string input = "B, 1, 6, 6") =>
        Markup.Verify($"[Model(Input = \"{input}\")]\n{Train}{attributes}\npublic partial class M\n{layers}");

    [Fact]
    public void StaticInt8_GoesIntoThePlan_WithItsCalibrationBatches()
    {
        var run = Verify("[Quantize(QuantizeMode.StaticInt8, CalibrationBatches = 8)]");
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        Assert.Contains("new global::ModelDsl.Runtime.Optimization.QuantizePass(global::ModelDsl.QuantizeMode.StaticInt8, CalibrationBatches: 8),", run.Source("M.Train.g.cs"));
    }

    [Fact]
    public void StaticInt8_WithoutCalibrationBatches_TakesTheDefault32() =>
        Assert.Contains("QuantizeMode.StaticInt8, CalibrationBatches: 32)", Verify("[Quantize(QuantizeMode.StaticInt8)]").Source("M.Train.g.cs"));

    [Theory]
    [InlineData(0)]
    [InlineData(-3)]
    public void CalibrationBatchesBelowOne_ReportsMD0311_OnTheArgument(int batches)
    {
        var run = Verify($"[Quantize(QuantizeMode.StaticInt8, {{|MD0311:CalibrationBatches = {batches}|}})]");
        Assert.Equal($"CalibrationBatches is {batches}; static int8 calibrates on at least one training batch", run.ModelDiagnostics.Single().GetMessage());
    }

    [Fact]
    public void StaticAfterDynamic_ReportsMD0312_OnTheSecondAttribute()
    {
        var run = Verify("[Quantize(QuantizeMode.DynamicInt8)]\n[{|MD0312:Quantize(QuantizeMode.StaticInt8)|}]");
        Assert.Equal("This [Quantize(QuantizeMode.StaticInt8)] follows [Quantize(QuantizeMode.DynamicInt8)]: static int8 observes and converts float Conv2d and Linear layers, " +
                     "and the first pass has already made the Linear layers int8; keep one [Quantize]", run.ModelDiagnostics.Single().GetMessage());
    }

    [Fact]
    public void DynamicAfterStatic_ReportsMD0312_OnTheSecondAttribute() =>
        Verify("[Quantize(QuantizeMode.StaticInt8)]\n[{|MD0312:Quantize(QuantizeMode.DynamicInt8)|}]");

    [Fact]
    public void CalibrationBatchesWithDynamicInt8_WarnsMD0313_OnTheArgument() =>
        Verify("[Quantize(QuantizeMode.DynamicInt8, {|MD0313:CalibrationBatches = 4|})]");

    [Fact]
    public void StaticInt8WithoutConvOrLinear_WarnsMD0314_OnTheAttribute() =>
        Markup.Verify("[Model(Input = \"B, 1\")]\n[Train(Loss.MSE, Optimizer.SGD, Data = \"t.csv\")]\n[{|MD0314:Quantize(QuantizeMode.StaticInt8)|}]\npublic partial class M\n{ [ReLU] public partial ReLU Act { get; } }");

    [Fact]
    public void StaticInt8WithAConvDeclaredAsAField_ReportsMD0310_NamingConv2d()
    {
        var run = Verify("[{|MD0310:Quantize(QuantizeMode.StaticInt8)|}]",
            "{ [Conv2d(4, 3)] private readonly Conv2d conv = null!; [Flatten] public partial Flatten F { get; } [Linear(10)] public partial Linear O { get; } }");
        Assert.StartsWith("[Quantize(QuantizeMode.StaticInt8)] replaces every Conv2d and Linear layer with an int8 one, but 'conv' is declared as a field",
            run.ModelDiagnostics.Single().GetMessage());
    }
}
