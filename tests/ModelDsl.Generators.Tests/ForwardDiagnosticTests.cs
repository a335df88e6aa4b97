using Microsoft.CodeAnalysis;

namespace ModelDsl.Generators.Tests;

/// <summary>
/// A hand-written forward against what the runtime does to its layers: MD0016 (a typed property read of a layer that
/// [Quantize] replaces), MD0017 (a layer called through .forward, which skips pruning's hook), and MD0113 reported for
/// every layer at once.
/// </summary>
public class ForwardDiagnosticTests
{
    private const string Plan = "[Train(Loss.CrossEntropy, Optimizer.SGD, Data = \"train.csv\")]\n";

    private static GeneratorRun Residual(string passes, string forward) => Markup.Verify($$"""
        using TorchSharp;
        [Model(Input = "B, 8")]
        {{Plan}}{{passes}}
        public partial class {|MD0013:M|}
        {
            [Linear(8, 8)] public partial Linear Hidden { get; }
            [ReLU]         public partial ReLU Act { get; }
            [Linear(8, 3)] public partial Linear Out { get; }
            {{forward}}
        }
        """);

    [Fact]
    public void QuantizeWithLinearReadThroughItsProperty_ReportsMD0016_OnEachRead_SayingWhatToWrite()
    {
        var run = Residual("[Quantize(QuantizeMode.DynamicInt8)]",
            "public override torch.Tensor forward(torch.Tensor x) => {|MD0016:Out|}.call(x + Act.call({|MD0016:this.Hidden|}.call(x)));");
        var errors = run.ModelDiagnostics.Where(d => d.Id == "MD0016").ToArray();
        Assert.All(errors, d => Assert.Equal(DiagnosticSeverity.Error, d.Severity));
        Assert.Contains(errors, d => d.GetMessage().Contains("forward reads 'Hidden' through its typed property, but [Quantize(QuantizeMode.DynamicInt8)] replaces", StringComparison.Ordinal)
            && d.GetMessage().EndsWith("run the layer through its slot: GetLayer(nameof(Hidden)).call(x)", StringComparison.Ordinal));
        Assert.Contains(errors, d => d.GetMessage().EndsWith("GetLayer(nameof(Out)).call(x + Act.call(this.Hidden.call(x)))", StringComparison.Ordinal));
    }

    [Fact]
    public void QuantizeWithAPropertyReadThatIsNotACall_ReportsMD0016_NamingTheSlot()
    {
        var run = Residual("[Quantize(QuantizeMode.DynamicInt8)]",
            "public override torch.Tensor forward(torch.Tensor x) => GetLayer(nameof(Out)).call(x) * {|MD0016:Out|}.weight!.sum();");
        Assert.EndsWith("GetLayer(nameof(Out)) (a Module<Tensor, Tensor>: a Linear before the pass, a DynamicQuantizedLinear after it)",
            run.ModelDiagnostics.Single(d => d.Id == "MD0016").GetMessage());
    }

    [Fact]
    public void QuantizeWithAnLstmReadThroughItsProperty_ReportsMD0016_NamingTheSlotsOutputOnlyCall()
    {
        // [Quantize] swaps the LSTM's module too: its typed property would throw after training.
        var run = Markup.Verify("""
            using TorchSharp;
            [Model(Input = "B, 5, 4")]
            [Train(Loss.CrossEntropy, Optimizer.SGD, Data = "train.csv")]
            [Quantize(QuantizeMode.DynamicInt8)]
            public partial class {|MD0013:Tagger|}
            {
                [LSTM(4, 6)]      public partial LSTM Rnn { get; }
                [Flatten]         public partial Flatten Flat { get; }
                [Linear(30, 3)]   public partial Linear Out { get; }
                public override torch.Tensor forward(torch.Tensor x) => GetLayer(nameof(Out)).call(Flat.call({|MD0016:Rnn|}.call(x, null).Item1));
            }
            """);
        string message = run.ModelDiagnostics.Single(d => d.Id == "MD0016").GetMessage();
        Assert.Contains("replaces this LSTM with an int8 layer", message, StringComparison.Ordinal);
        Assert.EndsWith("GetLayer(nameof(Rnn)).call(x) (the output sequence only, from zero states: the slot passes no states in or out)", message, StringComparison.Ordinal);
    }

    [Fact]
    public void QuantizeWithEveryLinearRunThroughItsSlot_CompilesWithMD0013Alone()
    {
        // ReLU is not replaced by any pass, so its typed property stays fine; nameof does not read the layer.
        var run = Residual("[Quantize(QuantizeMode.DynamicInt8)]",
            "public override torch.Tensor forward(torch.Tensor x) => GetLayer(nameof(Out)).call(x + Act.call(GetLayer(nameof(Hidden)).call(x)));");
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
    }

    [Fact]
    public void TypedPropertyReads_WithoutQuantize_AreNotMD0016() => Residual(
        "[Prune(PruneMethod.L1Unstructured, 0.5, Targets = new[] { nameof(Hidden) }, FineTuneEpochs = 2)]",
        "public override torch.Tensor forward(torch.Tensor x) => Out.call(x + Act.call(Hidden.call(x)));");

    [Fact]
    public void StructuredPruningThroughAHandWrittenForward_IsMD0305() => Residual(
        "[Prune(PruneMethod.Structured, 0.5, {|MD0305:Targets = new[] { nameof(Hidden) }|})]\n[Quantize(QuantizeMode.DynamicInt8)]",
        "public override torch.Tensor forward(torch.Tensor x) => GetLayer(nameof(Out)).call(x + Act.call(GetLayer(nameof(Hidden)).call(x)));");

    [Fact]
    public void QuantizeOverAComposedModelWhoseForwardReadsALinearTyped_ReportsMD0018_OnTheQuantizeAttribute()
    {
        var run = Markup.Verify($$"""
            using TorchSharp;
            [Model(Input = "B, 8")]
            public partial class {|MD0013:Block|}
            {
                [Linear(8, 8)] public partial Linear Inner { get; }
                [ReLU]         public partial ReLU Act { get; }
                public override torch.Tensor forward(torch.Tensor x) => x + Act.call(Inner.call(x));
            }

            [Model(Input = "B, 8")]
            public partial class Stack
            {
                public partial Block First { get; }
            }

            [Model(Input = "B, 8")]
            {{Plan}}[{|MD0018:Quantize(QuantizeMode.DynamicInt8)|}]
            public partial class Net
            {
                public partial Stack Body { get; }
                [Linear(8, 3)] public partial Linear Out { get; }
            }
            """);
        Assert.Equal("[Quantize(QuantizeMode.DynamicInt8)] replaces the Linear, LSTM and GRU layers of composed models too, but the hand-written forward of 'Block' reads 'Body.First.Inner' through its typed property, which then throws; in that forward run the layer through its slot: GetLayer(nameof(Inner)).call(...)",
            run.ModelDiagnostics.Single(d => d.Id == "MD0018").GetMessage());
    }

    [Fact]
    public void QuantizeOverAComposedModelThatRunsItsSlots_IsClean() => Markup.Verify($$"""
        using TorchSharp;
        [Model(Input = "B, 8")]
        public partial class {|MD0013:Block|}
        {
            [Linear(8, 8)] public partial Linear Inner { get; }
            public override torch.Tensor forward(torch.Tensor x) => x + GetLayer(nameof(Inner)).call(x);
        }

        [Model(Input = "B, 8")]
        {{Plan}}[Quantize(QuantizeMode.DynamicInt8)]
        public partial class Net
        {
            public partial Block Body { get; }
            [Linear(8, 3)] public partial Linear Out { get; }
        }
        """);

    [Fact]
    public void LayerCalledThroughForward_WarnsMD0017_OnEachForward()
    {
        var run = Markup.Verify("""
            using TorchSharp;
            [Model(Input = "B, 8")]
            public partial class {|MD0013:M|}
            {
                [Linear(8, 8)] public partial Linear Hidden { get; }
                [ReLU]         public ReLU Act = null!;
                [Linear(8, 3)] public partial Linear Out { get; }
                public override torch.Tensor forward(torch.Tensor x)
                {
                    var h = this.Act.{|MD0017:forward|}(Hidden.{|MD0017:forward|}(x));
                    return Out.call(x + h) + forward(x, x);
                }
                // Not the model's forward: not read.
                public torch.Tensor forward(torch.Tensor x, torch.Tensor y) => Out.forward(x + y);
            }
            """);
        var warnings = run.ModelDiagnostics.Where(d => d.Id == "MD0017").ToArray();
        Assert.All(warnings, d => Assert.Equal(DiagnosticSeverity.Warning, d.Severity));
        Assert.Contains(warnings, d => d.GetMessage() == "'Hidden.forward(...)' skips the layer's hooks (pruning recomputes the masked weight in one, so fine-tuning a pruned layer fails); call it with 'Hidden.call(...)'");
        Assert.Contains(warnings, d => d.GetMessage().StartsWith("'this.Act.forward(...)'", StringComparison.Ordinal));
    }

    [Fact]
    public void GeneratedForward_HasNoMD0017() => Markup.Verify("""
        [Model(Input = "B, 8")]
        public partial class M
        {
            [Linear(8)] public partial Linear Hidden { get; }
            [ReLU]      public partial ReLU Act { get; }
            public TorchSharp.torch.Tensor Twice(TorchSharp.torch.Tensor x) => Hidden.forward(Hidden.forward(x));
        }
        """);

    [Fact]
    public void SeveralOmittedSizesWithUserForward_ReportMD0113_ForEveryLayerAtOnce()
    {
        var run = Markup.Verify("""
            using TorchSharp;
            [Model(Input = "B, 1, 8, 8")]
            public partial class {|MD0013:M|}
            {
                [{|MD0113:Conv2d(4, 3)|}]    public partial Conv2d Conv { get; }
                [{|MD0113:BatchNorm2d|}]     public partial BatchNorm2d Norm { get; }
                [ReLU]                       public partial ReLU Act { get; }
                [Linear(36, 5)]              public partial Linear Fixed { get; }
                [{|MD0113:Linear(2)|}]       public partial Linear L { get; }
                public override torch.Tensor forward(torch.Tensor x) => L.call(Fixed.call(Act.call(Norm.call(Conv.call(x))).flatten(1)));
            }
            """);
        Assert.Contains(run.ModelDiagnostics, d => d.GetMessage().StartsWith("'L': the in-features cannot be inferred", StringComparison.Ordinal));
    }
}
