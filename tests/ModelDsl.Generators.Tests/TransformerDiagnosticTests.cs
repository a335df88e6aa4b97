using Microsoft.CodeAnalysis;

namespace ModelDsl.Generators.Tests;

/// <summary>The Transformer layers: shapes through (B, T, C), their diagnostics by id and span, weight tying.</summary>
public class TransformerDiagnosticTests
{
    internal const string TinyGpt = """
        namespace Samples.Text;

        [Model(Input = "B, T", InputType = DType.Int64)]
        [Train(Loss.CrossEntropy, Optimizer.AdamW, Epochs = 2, SequenceLength = 32, Data = "input.txt",
               Schedule = Schedule.Cosine, WarmupEpochs = 0.5, ScheduleInterval = ScheduleInterval.Step)]
        [Quantize(QuantizeMode.DynamicInt8)]
        public partial class TinyGpt
        {
            [Embedding(65, 48)]                                   public partial Embedding Tokens { get; }
            [PositionalEmbedding(32)]                             public partial PositionalEmbedding Positions { get; }
            [TransformerBlock(Heads = 4, Repeat = 2, Dropout = 0.1)] public partial TransformerBlock Blocks { get; }
            [LayerNorm]                                           public partial LayerNorm Norm { get; }
            [Linear(65, TiedTo = nameof(Tokens))]                 public partial Linear Head { get; }
        }
        """;

    private static GeneratorRun Layers(string input, string layers, string inputType = "Float32") => Markup.Verify(
        $"[Model(Input = \"{input}\", InputType = DType.{inputType})]\npublic partial class M\n{{\n{layers}\n}}");

    [Fact]
    public void TransformerModel_InfersShapesThroughSymbolicT_AndCountsTheTiedWeightOnce()
    {
        var run = Markup.Verify(TinyGpt);
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        var source = run.Source("TinyGpt.Model.g.cs");
        // Per block (C = 48, ratio 4): (4 + 8)·48² + (9 + 4)·48 = 27,648 + 624 = 28,272; two blocks 56,544.
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Blocks\", \"TransformerBlock\", \"(B, T, 48)\", 56544L)", source);
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Positions\", \"PositionalEmbedding\", \"(B, T, 48)\", 1536L)", source);
        // The tied head owns only its bias: its (65, 48) weight is the embedding's table.
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Head\", \"Linear\", \"(B, T, 65)\", 65L)", source);
        Assert.Contains("this.Head.weight = this.Tokens.weight!;", source);
        var train = run.Source("TinyGpt.Train.g.cs");
        Assert.Contains("SampleShape = new long[] { 32 },", train);
        Assert.Contains("IsLanguageModel = true,", train);
        Assert.Contains("Classes = 65,", train);
        Assert.Contains("WarmupEpochs = 0.5,", train);
    }

    [Fact]
    public void HeadsNotDividingC_ReportsMD0114_OnHeads() => Layers("B, T, 48",
        "[TransformerBlock({|MD0114:Heads = 5|})] public partial TransformerBlock Blocks { get; }");

    [Fact]
    public void ConcreteTAboveMaxLength_ReportsMD0115_OnMaxLength() => Layers("B, 80, 16",
        "[PositionalEmbedding({|MD0115:64|})] public partial PositionalEmbedding Positions { get; }");

    [Fact]
    public void SequenceLengthAboveMaxLength_ReportsMD0115_OnSequenceLength() => Markup.Verify("""
        [Model(Input = "B, T", InputType = DType.Int64)]
        [Train(Loss.CrossEntropy, Optimizer.AdamW, {|MD0115:SequenceLength = 128|})]
        public partial class M
        {
            [Embedding(65, 16)]       public partial Embedding Tokens { get; }
            [PositionalEmbedding(64)] public partial PositionalEmbedding Positions { get; }
            [Linear(65)]              public partial Linear Head { get; }
        }
        """);

    [Theory]
    [InlineData("[Linear(65, {|MD0116:TiedTo = nameof(Norm)|})] public partial Linear Head { get; }")]
    [InlineData("[Linear(64, {|MD0116:TiedTo = nameof(Tokens)|})] public partial Linear Head { get; }")]
    [InlineData("[Linear(65, {|MD0116:TiedTo = \"Missing\"|})] public partial Linear Head { get; }")]
    public void TyingWithMismatchedSizes_ReportsMD0116_OnTiedTo(string head) => Layers("B, T",
        "[Embedding(65, 16)] public partial Embedding Tokens { get; }\n[LayerNorm] public partial LayerNorm Norm { get; }\n" + head, "Int64");

    [Fact]
    public void TyingToAnEmbeddingOfOtherWidth_ReportsMD0116() => Layers("B, T",
        "[Embedding(65, 16)] public partial Embedding Tokens { get; }\n[Linear(32)] public partial Linear Up { get; }\n" +
        "[Linear(65, {|MD0116:TiedTo = nameof(Tokens)|})] public partial Linear Head { get; }", "Int64");

    [Theory]
    [InlineData("B, 64", "[{|MD0117:TransformerBlock(Heads = 4)|}] public partial TransformerBlock Blocks { get; }")]
    [InlineData("B, 4, 8, 8", "[{|MD0117:TransformerBlock(Heads = 2)|}] public partial TransformerBlock Blocks { get; }")]
    [InlineData("B, 64", "[{|MD0117:PositionalEmbedding(16)|}] public partial PositionalEmbedding Positions { get; }")]
    public void BlockOverAnInputThatIsNotBTC_ReportsMD0117_OnTheAttribute(string input, string layer) => Layers(input, layer);

    [Fact]
    public void BlockOverTokenIds_ReportsMD0107_SayingToEmbedFirst()
    {
        var run = Layers("B, T", "[{|MD0107:TransformerBlock(Heads = 2)|}] public partial TransformerBlock Blocks { get; }", "Int64");
        Assert.Contains("[Embedding]", run.ModelDiagnostics.Single().GetMessage());
    }

    [Theory]
    [InlineData("[TransformerBlock(Heads = 2, {|MD0104:Repeat = 0|})] public partial TransformerBlock Blocks { get; }")]
    [InlineData("[TransformerBlock({|MD0104:Heads = 0|})] public partial TransformerBlock Blocks { get; }")]
    [InlineData("[TransformerBlock(Heads = 2, {|MD0105:Dropout = 1.0|})] public partial TransformerBlock Blocks { get; }")]
    [InlineData("[TransformerBlock(Heads = 2, {|MD0101:EmbeddingDim = 32|})] public partial TransformerBlock Blocks { get; }")]
    [InlineData("[PositionalEmbedding(16, {|MD0101:32|})] public partial PositionalEmbedding Positions { get; }")]
    public void OtherTransformerArguments_AreCheckedOnTheirArgument(string layer) => Layers("B, T, 16", layer);

    [Fact]
    public void WrongPropertyType_ReportsMD0006_NamingTheRuntimeModule()
    {
        var run = Layers("B, T, 16", "[TransformerBlock(Heads = 2)] public partial {|MD0006:Linear|} Blocks { get; }");
        Assert.Contains("ModelDsl.TransformerBlock", run.ModelDiagnostics.Single().GetMessage());
    }

    [Fact]
    public void LanguageModelWithSymbolicT_NeedsSequenceLength_MD0409_SaysHow()
    {
        var run = Markup.Verify("""
            [Model(Input = "B, T", InputType = DType.Int64)]
            [{|MD0409:Train(Loss.CrossEntropy, Optimizer.AdamW)|}]
            public partial class M
            {
                [Embedding(65, 16)] public partial Embedding Tokens { get; }
                [Linear(65)]        public partial Linear Head { get; }
            }
            """);
        Assert.Contains("SequenceLength", run.ModelDiagnostics.Single().GetMessage());
    }

    [Theory]
    [InlineData("{|MD0404:Loss.MSE|}, Optimizer.AdamW, SequenceLength = 16")]
    [InlineData("Loss.CrossEntropy, Optimizer.AdamW, {|MD0408:SequenceLength = 8|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.AdamW, SequenceLength = 16, Epochs = 2, Schedule = Schedule.Cosine, {|MD0406:WarmupEpochs = 0.5|}")]
    [InlineData("Loss.CrossEntropy, Optimizer.AdamW, SequenceLength = 16, {|MD0413:Header = true|}, {|MD0413:LabelColumn = \"label\"|}")]
    public void LanguageModelTrainingSettings_AreChecked(string train) => Markup.Verify($$"""
        [Model(Input = "B, {{(train.Contains("= 8|") ? "16" : "T")}}", InputType = DType.Int64)]
        [Train({{train}})]
        public partial class M
        {
            [Embedding(65, 16)] public partial Embedding Tokens { get; }
            [Linear(65)]        public partial Linear Head { get; }
        }
        """);

    [Theory]
    [InlineData("[TransformerBlock(Heads = int.MaxValue, MlpRatio = int.MaxValue, Repeat = int.MaxValue)] public partial TransformerBlock B { get; }")]
    [InlineData("[TransformerBlock(Heads = -1, Dropout = double.NaN)] public partial TransformerBlock B { get; }")]
    [InlineData("[PositionalEmbedding(int.MinValue, -3)] public partial PositionalEmbedding P { get; }")]
    [InlineData("[Linear(4, TiedTo = null)] public partial Linear L { get; }")]
    [InlineData("[Linear(4, TiedTo = nameof(L))] public partial Linear L { get; }")]
    [InlineData("[TransformerBlock] public partial PositionalEmbedding B { get; }")]
    public void HostileTransformerDeclarations_NeverCrashTheGenerator(string layer)
    {
        foreach (var input in new[] { "B, T, 2147483647", "B, T", "B, 3, 4", "B" })
            GeneratorHarness.Run(GeneratorHarness.Usings + $"[Model(Input = \"{input}\")]\npublic partial class M\n{{\n{layer}\n}}").AssertNoGeneratorCrash();
    }
}
