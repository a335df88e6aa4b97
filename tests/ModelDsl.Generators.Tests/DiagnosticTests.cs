using Microsoft.CodeAnalysis;

namespace ModelDsl.Generators.Tests;

/// <summary>Every diagnostic, asserted by id and by the exact span it underlines.</summary>
public class DiagnosticTests
{
    [Fact]
    public void MissingTorchSharp_ReportsMD0001_OnTheModelAttribute()
    {
        var (source, expected) = Markup.Parse("using ModelDsl;\n[{|MD0001:Model(Input = \"B, 4\")|}]\npublic partial class M { }");
        var run = GeneratorHarness.Run(GeneratorHarness.Compile(new[] { ("M.cs", source) }, withTorchSharp: false));
        run.AssertNoGeneratorCrash();
        var d = Assert.Single(run.ModelDiagnostics);
        Assert.Equal(("MD0001", expected[0].Start, expected[0].Length), (d.Id, d.Location.SourceSpan.Start, d.Location.SourceSpan.Length));
    }

    [Fact]
    public void NonPartialClass_ReportsMD0002_OnTheClassName() => Markup.Verify("""
        [Model(Input = "B, 4")]
        public class {|MD0002:M|} { }
        """);

    [Theory]
    [InlineData("public static partial class {|MD0003:M|} { }")]
    [InlineData("public abstract partial class {|MD0003:M|} { [Linear(2)] public partial Linear L { get; } }")]
    [InlineData("public partial class {|MD0003:M|}<T> { [Linear(2)] public partial Linear L { get; } }")]
    [InlineData("public partial record {|MD0003:M|} { }")]
    public void UnsupportedClass_ReportsMD0003_OnTheClassName(string declaration) =>
        Markup.Verify("[Model(Input = \"B, 4\")]\n" + declaration);

    [Fact]
    public void NestedInNonPartialClass_ReportsMD0004() => Markup.Verify("""
        public class Outer
        {
            [Model(Input = "B, 4")]
            public partial class {|MD0004:M|} { [Linear(2)] public partial Linear L { get; } }
        }
        """);

    [Theory]
    [InlineData("[Linear(2)] public partial Linear {|MD0005:L|} { get; set; }")]
    [InlineData("[Linear(2)] public static partial Linear {|MD0005:L|} { get; }")]
    [InlineData("[Linear(2)] public Linear {|MD0005:L|} { get; }")]
    [InlineData("[Linear(2)] public const int {|MD0005:L|} = 1;")]
    public void InvalidLayerMember_ReportsMD0005_OnTheMember(string member) =>
        Markup.Verify("[Model(Input = \"B, 4\")]\npublic partial class M\n{\n    " + member + "\n}");

    [Fact]
    public void WrongPropertyType_ReportsMD0006_OnTheType() => Markup.Verify("""
        [Model(Input = "B, 4")]
        public partial class M
        {
            [Linear(2)] public partial {|MD0006:Conv2d|} L { get; }
        }
        """);

    [Fact]
    public void TwoLayerAttributes_ReportsMD0007() => Markup.Verify("""
        [Model(Input = "B, 4")]
        public partial class M
        {
            [Linear(2), ReLU] public partial Linear {|MD0007:L|} { get; }
        }
        """);

    [Fact]
    public void NoLayers_WarnsMD0008() => Markup.Verify("""
        [Model(Input = "B, 4")]
        public partial class {|MD0008:M|} { }
        """);

    [Fact]
    public void PartialPropertyWithoutAttribute_ReportsMD0009() => Markup.Verify("""
        [Model(Input = "B, 4")]
        public partial class M
        {
            [Linear(2)] public partial Linear L { get; }
            public partial Linear {|MD0009:Forgotten|} { get; }
        }
        """);

    [Theory]
    [InlineData("[RNN(16, 32)] public partial RNN {|MD0009:Rnn|} { get; }", "RNN")]
    [InlineData("[LSTMCell(16, 32)] public partial LSTMCell {|MD0009:Cell|} { get; }", "LSTMCell")]
    [InlineData("[MultiheadAttention(16, 4)] public partial MultiheadAttention {|MD0009:Attention|} { get; }", "MultiheadAttention")]
    [InlineData("[NoSuchLayer(3)] public partial Linear {|MD0009:L|} { get; }", "NoSuchLayer")]
    [InlineData("[RNN(16, 32)] public RNN {|MD0009:Rnn|} = null!;", "RNN")]
    public void UnknownLayerAttribute_ReportsMD0009_SayingItIsNotAModelDslLayer(string member, string attribute)
    {
        var run = Markup.Verify("[Model(Input = \"B, 16\")]\npublic partial class M\n{\n    [Linear(16)] public partial Linear Before { get; }\n    " + member + "\n}");
        var message = run.ModelDiagnostics.Single().GetMessage();
        Assert.Contains($"[{attribute}] is not a ModelDsl layer attribute", message);
        Assert.Contains("[Linear], [Conv1d], [Conv2d]", message);
        Assert.Contains("not supported yet", message);
        Assert.DoesNotContain("has no layer attribute", message);
        // The compiler's own complaint about the name stays (CS0616 not an attribute, CS0246 unknown); nothing else.
        Assert.All(run.CompilerDiagnostics, d => Assert.True(d.Id is "CS0616" or "CS0246", d.ToString()));
    }

    [Fact]
    public void ModelContainingItself_ReportsMD0010_OnTheProperty() => Markup.Verify("""
        [Model(Input = "B, 4")]
        public partial class A
        {
            [Linear(4)] public partial Linear L { get; }
            public partial B {|MD0010:Inner|} { get; }
        }

        [Model(Input = "B, 4")]
        public partial class B
        {
            public partial A {|MD0010:Outer|} { get; }
        }
        """);

    [Fact]
    public void LayersInTwoFiles_WarnsMD0011_OnTheModelAttribute()
    {
        var (first, expected) = Markup.Parse(GeneratorHarness.Usings + "[{|MD0011:Model(Input = \"B, 4\")|}]\npublic partial class M { [Linear(3)] public partial Linear A { get; } }");
        var second = GeneratorHarness.Usings + "public partial class M { [Linear(2)] public partial Linear B { get; } }";
        var run = GeneratorHarness.Run(GeneratorHarness.Compile(new[] { ("First.cs", first), ("Second.cs", second) }));
        run.AssertNoGeneratorCrash();
        var d = Assert.Single(run.ModelDiagnostics);
        Assert.Equal("MD0011", d.Id);
        Assert.Equal(expected[0].Start, d.Location.SourceSpan.Start);
        Assert.Equal("First.cs", d.Location.GetLineSpan().Path);
        Assert.DoesNotContain(run.CompilerDiagnostics, x => x.Severity == DiagnosticSeverity.Error);
    }

    [Fact]
    public void OtherBaseClass_ReportsMD0012() => Markup.Verify("""
        public class Base { }
        [Model(Input = "B, 4")]
        public partial class {|MD0012:M|} : Base { [Linear(2)] public partial Linear L { get; } }
        """);

    [Fact]
    public void UserForward_WarnsMD0013_AndChecksNoShapes()
    {
        var run = Markup.Verify("""
            using TorchSharp;
            [Model(Input = "B, 4")]
            public partial class {|MD0013:M|}
            {
                [Linear(4, 2)] public partial Linear L { get; }
                [Linear(7, 3)] public partial Linear Skip { get; }
                public override torch.Tensor forward(torch.Tensor x) => Skip.call(L.call(x));
            }
            """);
        // A warning: an info is not shown at the default build verbosity.
        Assert.Equal(DiagnosticSeverity.Warning, run.ModelDiagnostics.Single().Severity);
        Assert.Contains("#pragma warning disable MD0013", run.ModelDiagnostics.Single().GetMessage());
    }

    [Fact]
    public void TwoInputForward_ReportsMD0015_NotALaterLayersSize()
    {
        // The second path's layer (in-features 32) would otherwise be checked against the first path's output.
        var run = Markup.Verify("""
            using TorchSharp;
            [Model(Input = "B, 64")]
            public partial class M
            {
                [Linear(64, 10)] public partial Linear A { get; }
                [Linear(32, 10)] public partial Linear B { get; }
                public torch.Tensor {|MD0015:forward|}(torch.Tensor x, torch.Tensor y) => A.forward(x) + B.forward(y);
            }
            """);
        Assert.Contains("takes one input tensor", run.ModelDiagnostics.Single().GetMessage());
        Assert.DoesNotContain(run.CompilerDiagnostics, d => d.Severity == DiagnosticSeverity.Error);
    }

    [Fact]
    public void OneInputForward_BesideAnOverload_IsNotMD0015() => Markup.Verify("""
        using TorchSharp;
        [Model(Input = "B, 4")]
        public partial class {|MD0013:M|}
        {
            [Linear(4, 2)] public partial Linear L { get; }
            public override torch.Tensor forward(torch.Tensor x) => forward(x, x);
            public torch.Tensor forward(torch.Tensor x, torch.Tensor y) => L.forward(x + y);
        }
        """);

    [Theory]
    [InlineData("{|MD0100:Input = \"B, 0\"|}")]
    [InlineData("{|MD0100:Input = \"B,, 4\"|}")]
    [InlineData("{|MD0100:Input = \"\"|}")]
    [InlineData("{|MD0100:Input = \"B, 4x\"|}")]
    public void MalformedInput_ReportsMD0100_OnTheArgument(string arguments) =>
        Markup.Verify("[Model(" + arguments + ")]\npublic partial class M { [Linear(2)] public partial Linear L { get; } }");

    [Fact]
    public void InvalidInputType_ReportsMD0014_OnTheArgument() => Markup.Verify("""
        [Model(Input = "B, 4", {|MD0014:InputType = (DType)99|})]
        public partial class M { [Linear(2)] public partial Linear L { get; } }
        """);

    [Fact]
    public void Diagnostics_AreBoundToTheirSyntaxTree_SoPragmasApply()
    {
        // csc applies #pragma warning disable and per-file .editorconfig severities only to diagnostics whose
        // location is in a syntax tree of the compilation (checked by hand in a real build).
        var run = GeneratorHarness.Run(GeneratorHarness.Usings + "[Model(Input = \"B, 4\")]\npublic partial class M { }");
        var d = Assert.Single(run.ModelDiagnostics);
        Assert.Equal("MD0008", d.Id);
        Assert.True(d.Location.IsInSource);
        Assert.Same(run.Output.SyntaxTrees.First(), d.Location.SourceTree);
    }

    [Fact]
    public void LinearInFeaturesMismatch_ReportsMD0101_OnTheArgument() => Markup.Verify("""
        [Model(Input = "B, 64")]
        public partial class M
        {
            [Linear(128)] public partial Linear Hidden { get; }
            [Linear({|MD0101:64|}, 10)] public partial Linear Output { get; }
        }
        """);

    [Fact]
    public void ConvInChannelsMismatch_ReportsMD0101() => Markup.Verify("""
        [Model(Input = "B, 1, 8, 8")]
        public partial class M
        {
            [Conv2d({|MD0101:3|}, 8, 3)] public partial Conv2d Conv { get; }
        }
        """);

    [Fact]
    public void ConvOnFeatureVector_ReportsMD0102_OnTheAttribute() => Markup.Verify("""
        [Model(Input = "B, 64")]
        public partial class M
        {
            [{|MD0102:Conv2d(16, 3)|}] public partial Conv2d Conv { get; }
        }
        """);

    [Theory]
    [InlineData("B, 1, 8, 8", "[Conv2d(4, {|MD0103:9|})] public partial Conv2d C { get; }")]
    [InlineData("B, 1, 2, 2", "[MaxPool2d({|MD0103:3|}, Padding = 1, Dilation = 2)] public partial MaxPool2d P { get; }")]
    [InlineData("B, 2, 4", "[Conv1d(4, 3, Padding = 1, Dilation = 2)] public partial Conv1d C1 { get; }\n[Conv1d(4, {|MD0103:3|}, Dilation = 2)] public partial Conv1d C2 { get; }")]
    public void KernelLargerThanInput_ReportsMD0103(string input, string layers) =>
        Markup.Verify($"[Model(Input = \"{input}\")]\npublic partial class M\n{{\n{layers}\n}}");

    [Theory]
    [InlineData("[Linear({|MD0104:0|})] public partial Linear L { get; }")]
    [InlineData("[Linear({|MD0104:-5|}, 3)] public partial Linear L { get; }")]
    [InlineData("[Conv1d(4, 3, {|MD0104:Stride = 0|})] public partial Conv1d C { get; }")]
    [InlineData("[Embedding(10, {|MD0104:0|})] public partial Embedding E { get; }")]
    public void NonPositiveSize_ReportsMD0104_OnTheArgument(string layer) =>
        Markup.Verify("[Model(Input = \"B, 4, 4\")]\npublic partial class M\n{\n" + layer + "\n}");

    [Theory]
    [InlineData("1.0")]
    [InlineData("-0.1")]
    [InlineData("double.NaN")]
    public void DropoutOutOfRange_ReportsMD0105(string p) => Markup.Verify(
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Dropout({|MD0105:" + p + "|})] public partial Dropout D { get; } }");

    [Fact]
    public void EmbeddingOfFloatInput_ReportsMD0106() => Markup.Verify("""
        [Model(Input = "B, T")]
        public partial class M { [{|MD0106:Embedding(65, 16)|}] public partial Embedding E { get; } }
        """);

    [Fact]
    public void LinearOnTokenIds_ReportsMD0107() => Markup.Verify("""
        [Model(Input = "B, 16", InputType = DType.Int64)]
        public partial class M { [{|MD0107:Linear(4)|}] public partial Linear L { get; } }
        """);

    [Theory]
    [InlineData("[Softmax({|MD0108:2|})] public partial Softmax S { get; }")]
    [InlineData("[Flatten({|MD0108:StartDim = 3|})] public partial Flatten F { get; }")]
    public void DimOutOfRange_ReportsMD0108(string layer) =>
        Markup.Verify("[Model(Input = \"B, 4\")]\npublic partial class M { " + layer + " }");

    [Fact]
    public void InFeaturesFromSymbolicDim_ReportsMD0109() => Markup.Verify("""
        [Model(Input = "B, F")]
        public partial class M { [{|MD0109:Linear(4)|}] public partial Linear L { get; } }
        """);

    [Fact]
    public void SymbolicDim_WithExplicitSize_IsAccepted() => Markup.Verify("""
        [Model(Input = "B, F")]
        public partial class M { [Linear(32, 4)] public partial Linear L { get; } }
        """);

    [Theory]
    [InlineData("[Conv2d(6, 3, {|MD0110:Groups = 4|})] public partial Conv2d C { get; }")]
    [InlineData("[MaxPool2d(2, {|MD0110:Padding = 2|})] public partial MaxPool2d P { get; }")]
    public void InvalidArgument_ReportsMD0110(string layer) =>
        Markup.Verify("[Model(Input = \"B, 2, 8, 8\")]\npublic partial class M { " + layer + " }");

    [Fact]
    public void RectangularKernels_AreInferredPerAxis_AndEmittedWithTorchSharpsTupleOverloads()
    {
        var run = Markup.Verify("""
            [Model(Input = "B, 1, 8, 12")]
            public partial class M
            {
                [Conv2d(4, new[] { 3, 5 }, PaddingW = 1, StrideW = 2)] public partial Conv2d C { get; }
                [MaxPool2d(new[] { 2, 1 })]                            public partial MaxPool2d P { get; }
                [AvgPool2d(3, StrideH = 1, PaddingW = 1)]              public partial AvgPool2d A { get; }
            }
            """);
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        var source = run.Source("M.Model.g.cs");
        // H: (8 - 3) + 1 = 6; W: (12 + 2 - 5) / 2 + 1 = 5. Then (6 / 2, 5 / 1); then (3 - 3 + 1, (5 + 2 - 3) / 3 + 1).
        Assert.Contains("\"(B, 4, 6, 5)\"", source);
        Assert.Contains("\"(B, 4, 3, 5)\"", source);
        Assert.Contains("\"(B, 4, 1, 2)\"", source);
        Assert.Contains("global::TorchSharp.torch.nn.Conv2d(1, 4, (3L, 5L), (1L, 2L), (0L, 1L), (1L, 1L), global::TorchSharp.PaddingModes.Zeros, 1, true)", source);
        Assert.Contains("global::TorchSharp.torch.nn.MaxPool2d((2L, 1L), stride: (2L, 1L), padding: (0L, 0L), dilation: (1L, 1L))", source);
        Assert.Contains("global::TorchSharp.torch.nn.AvgPool2d((3L, 3L), stride: (1L, 3L), padding: (0L, 1L))", source);
        Assert.Contains("\"C\", \"Conv2d\", \"(B, 4, 6, 5)\", 64L)", source); // 4·1·3·5 weights + 4 biases
    }

    [Theory]
    [InlineData("[Conv2d(4, {|MD0110:new[] { 3, 5, 7 }|})] public partial Conv2d C { get; }")]
    [InlineData("[MaxPool2d({|MD0110:new int[0]|})] public partial MaxPool2d P { get; }")]
    [InlineData("[Conv2d(4, {|MD0103:new[] { 3, 13 }|})] public partial Conv2d C { get; }")]
    [InlineData("[Conv2d(4, new[] { 3, 5 }, {|MD0104:StrideW = 0|})] public partial Conv2d C { get; }")]
    [InlineData("[Conv2d(4, {|MD0104:new[] { 3, 0 }|})] public partial Conv2d C { get; }")]
    [InlineData("[Conv2d(4, 3, {|MD0104:Stride = 0|})] public partial Conv2d C { get; }")]
    [InlineData("[Conv2d(4, 3, {|MD0104:PaddingH = -2|})] public partial Conv2d C { get; }")]
    [InlineData("[MaxPool2d(new[] { 2, 1 }, {|MD0110:PaddingW = 1|})] public partial MaxPool2d P { get; }")]
    [InlineData("[AvgPool2d(new[] { 4, 2 }, {|MD0110:Padding = 2|})] public partial AvgPool2d P { get; }")]
    public void RectangularWindowMistakes_AreReportedOnTheirArgument(string layer) =>
        Markup.Verify("[Model(Input = \"B, 2, 8, 12\")]\npublic partial class M { " + layer + " }");

    [Fact]
    public void IntMaxValueSizes_AreCountedExactly_WithoutDiagnostics()
    {
        var run = Markup.Verify("""
            [Model(Input = "B, 2147483647")]
            public partial class M { [Linear(2147483647)] public partial Linear A { get; } }
            """);
        // 2147483647 * 2147483647 + 2147483647 fits a long; computed here independently.
        Assert.Contains("4611686016279904256L", run.Source("M.Model.g.cs"));
    }

    [Fact]
    public void ParameterCountOverflow_ReportsMD0111() => Markup.Verify("""
        [Model(Input = "B, 2147483647, 8, 8")]
        public partial class M
        {
            [{|MD0111:Conv2d(2147483647, 3)|}] public partial Conv2d C { get; }
        }
        """);

    [Fact]
    public void ComposedModelInputMismatch_ReportsMD0112_OnTheProperty() => Markup.Verify("""
        [Model(Input = "B, 32")]
        public partial class Block
        {
            [Linear(32)] public partial Linear L { get; }
        }

        [Model(Input = "B, 64")]
        public partial class Net
        {
            public partial Block {|MD0112:First|} { get; }
        }
        """);

    [Fact]
    public void OmittedSizeWithUserForward_ReportsMD0113() => Markup.Verify("""
        using TorchSharp;
        [Model(Input = "B, 4")]
        public partial class {|MD0013:M|}
        {
            [{|MD0113:Linear(2)|}] public partial Linear L { get; }
            public override torch.Tensor forward(torch.Tensor x) => L.call(x);
        }
        """);

    [Fact]
    public void EveryDiagnostic_HasATestAndADocsSection()
    {
        var root = RepoRoot();
        var tests = string.Concat(System.IO.Directory.GetFiles(System.IO.Path.Combine(root, "tests", "ModelDsl.Generators.Tests"), "*DiagnosticTests.cs")
            .OrderBy(f => f, StringComparer.Ordinal).Select(System.IO.File.ReadAllText));
        var docs = System.IO.File.ReadAllText(System.IO.Path.Combine(root, "docs", "diagnostics.md"));
        var docsUrl = ModelDsl.Generators.Diagnostics.DiagnosticDescriptors.DocsUrl;
        foreach (var descriptor in ModelDsl.Generators.Diagnostics.DiagnosticDescriptors.All)
        {
            Assert.Contains("|" + descriptor.Id + ":", tests);
            Assert.Contains($"<a id=\"{descriptor.Id.ToLowerInvariant()}\"></a>", docs);
            Assert.Equal($"{docsUrl}/diagnostics.md#{descriptor.Id.ToLowerInvariant()}", descriptor.HelpLinkUri);
        }
    }

    /// <summary>The help links are absolute, built from the one MSBuild property that says where the docs are published.</summary>
    [Fact]
    public void HelpLinks_AreAbsoluteUrls_FromTheModelDslDocsUrlProperty()
    {
        var props = System.Xml.Linq.XDocument.Load(System.IO.Path.Combine(RepoRoot(), "Directory.Build.props"));
        var property = props.Descendants("ModelDslDocsUrl").Single().Value.Trim();
        Assert.Equal(property.TrimEnd('/'), ModelDsl.Generators.Diagnostics.DiagnosticDescriptors.DocsUrl);
        foreach (var descriptor in ModelDsl.Generators.Diagnostics.DiagnosticDescriptors.All)
        {
            Assert.True(Uri.TryCreate(descriptor.HelpLinkUri, UriKind.Absolute, out var uri) && uri.Scheme == "https", descriptor.HelpLinkUri);
            Assert.StartsWith(property.TrimEnd('/') + "/", descriptor.HelpLinkUri, StringComparison.Ordinal);
        }
    }

    internal static string RepoRoot()
    {
        var dir = new System.IO.DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !System.IO.File.Exists(System.IO.Path.Combine(dir.FullName, "ModelDsl.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("ModelDsl.sln not found above " + AppContext.BaseDirectory);
    }
}
