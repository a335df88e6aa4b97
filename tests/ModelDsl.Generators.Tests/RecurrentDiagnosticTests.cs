namespace ModelDsl.Generators.Tests;

/// <summary>[LSTM] and [GRU]: shapes and parameter counts, the generated chain step, and their diagnostics by id and span.</summary>
public class RecurrentDiagnosticTests
{
    internal const string SequenceTagger = """
        namespace Samples.Text;

        [Model(Input = "B, 12, 6")]
        [Train(Loss.CrossEntropy, Optimizer.Adam)]
        [Quantize(QuantizeMode.DynamicInt8)]
        public partial class SequenceTagger
        {
            [LSTM(16, NumLayers = 2)]          public partial LSTM Rnn { get; }
            [GRU(16, 8, Bidirectional = true)] public partial GRU Gru { get; }
            [Flatten]                          public partial Flatten Flat { get; }
            [Linear(3)]                        public partial Linear Head { get; }
        }
        """;

    private static GeneratorRun Layers(string input, string layers, string inputType = "Float32") => Markup.Verify(
        $"[Model(Input = \"{input}\", InputType = DType.{inputType})]\npublic partial class M\n{{\n{layers}\n}}");

    [Fact]
    public void RecurrentLayers_InferShapesAndCountParametersAsPyTorch()
    {
        var run = Markup.Verify(SequenceTagger);
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        var source = run.Source("SequenceTagger.Model.g.cs");
        // LSTM 6 → 16, two layers: 4·16·(6 + 16 + 2) + 4·16·(16 + 16 + 2) = 1,536 + 2,176.
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Rnn\", \"LSTM\", \"(B, 12, 16)\", 3712L)", source);
        // GRU 16 → 8 both ways: 2·3·8·(16 + 8 + 2); the output holds both directions' 8 features.
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Gru\", \"GRU\", \"(B, 12, 16)\", 1248L)", source);
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Flat\", \"Flatten\", \"(B, 192)\", 0L)", source);
        Assert.Contains("__Rnn = global::ModelDsl.RecurrentLayer.LSTM(6, 16, numLayers: 2, bidirectional: false, batchFirst: true);", source);
        Assert.Contains("__Gru = global::ModelDsl.RecurrentLayer.GRU(16, 8, numLayers: 1, bidirectional: true, batchFirst: true);", source);
        Assert.Contains("x = __Rnn.call(x);", source);
    }

    [Fact]
    public void QuantizeOverRecurrentLayersOnly_DoesNotWarnMD0309() =>
        Markup.Verify("[Model(Input = \"B, 5, 4\")]\n[Train(Loss.CrossEntropy, Optimizer.Adam)]\n[Quantize(QuantizeMode.DynamicInt8)]\npublic partial class M\n{\n" +
                      "[GRU(3)] public partial GRU Rnn { get; }\n[Flatten] public partial Flatten Flat { get; }\n}");

    [Theory]
    [InlineData("B, T, 6", "[LSTM({|MD0101:5|}, 16)] public partial LSTM Rnn { get; }")]
    [InlineData("B, T, 6", "[GRU({|MD0104:0|})] public partial GRU Rnn { get; }")]
    [InlineData("B, T, 6", "[LSTM(8, {|MD0104:NumLayers = 0|})] public partial LSTM Rnn { get; }")]
    [InlineData("B, 6", "[{|MD0117:LSTM(8)|}] public partial LSTM Rnn { get; }")]
    [InlineData("B, 1, 8, 8", "[{|MD0117:GRU(8)|}] public partial GRU Rnn { get; }")]
    [InlineData("B, T, C", "[{|MD0109:LSTM(8)|}] public partial LSTM Rnn { get; }")]
    [InlineData("B, T, 6", "[LSTM(8)] public partial {|MD0006:GRU|} Rnn { get; }")]
    [InlineData("B, T, 6", "[LSTM(8)] public LSTM {|MD0005:Rnn|} = null!;")]
    public void BadRecurrentLayers_AreReportedWhereTheyAreWritten(string input, string layer) => Layers(input, layer);

    [Fact]
    public void OmittedInputSizeWithUserForward_ReportsMD0113() => Markup.Verify("""
        using TorchSharp;
        [Model(Input = "B, T, 4")]
        public partial class {|MD0013:M|}
        {
            [{|MD0113:LSTM(8)|}] public partial LSTM Rnn { get; }
            public override torch.Tensor forward(torch.Tensor x) => Rnn.call(x, null).Item1;
        }
        """);

    [Fact]
    public void UserForward_CallsTheLstmPropertyWithStates()
    {
        // With the input size explicit, a hand-written forward gets the TorchSharp LSTM itself (states and all).
        var run = Markup.Verify("""
            using TorchSharp;
            [Model(Input = "B, T, 4")]
            public partial class {|MD0013:M|}
            {
                [LSTM(4, 8)] public partial LSTM Rnn { get; }
                public override torch.Tensor forward(torch.Tensor x) { var (y, h, c) = Rnn.call(x, null); return h[-1]; }
            }
            """);
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        Assert.Contains("__Rnn = global::ModelDsl.RecurrentLayer.LSTM(4, 8, numLayers: 1, bidirectional: false, batchFirst: true);", run.Source("M.Model.g.cs"));
    }

    [Fact]
    public void RecurrentLayerOverTokenIds_ReportsMD0107() =>
        Layers("B, T", "[{|MD0107:LSTM(8)|}] public partial LSTM Rnn { get; }", "Int64");

    [Theory]
    [InlineData("PruneMethod.L1Unstructured, 0.5")]
    [InlineData("PruneMethod.Structured, 2")]
    [InlineData("PruneMethod.LnStructured, 0.5, Dim = 0")]
    public void PruningARecurrentLayer_ReportsMD0118_OnTargets(string method)
    {
        var run = Markup.Verify("[Model(Input = \"B, 5, 4\")]\n[Train(Loss.CrossEntropy, Optimizer.Adam)]\n" +
            $"[Prune({method}, {{|MD0118:Targets = new[] {{ nameof(Rnn) }}|}})]\npublic partial class M\n{{\n" +
            "[LSTM(8)] public partial LSTM Rnn { get; }\n[Flatten] public partial Flatten Flat { get; }\n[Linear(3)] public partial Linear Head { get; }\n}");
        Assert.Contains("'Rnn' is an LSTM", run.ModelDiagnostics.Single().GetMessage());
    }
}
