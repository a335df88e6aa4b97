namespace ModelDsl.Generators.Tests;

/// <summary>
/// Several model inputs (<c>[Model(Inputs = ...)]</c>, docs/graphs.md): MD0031–MD0033 by id and span, shape inference
/// seeded per input, and the generated forward/Pack/Predict.
/// </summary>
public class MultiInputDiagnosticTests
{
    internal const string TwoInputs = """
        using ModelDsl.Layers;
        namespace Samples.Graphs;

        /// <summary>An 8x8 image through a small CNN, joined with four metadata features.</summary>
        [Model(Inputs = new[] { "image: B, 1, 8, 8", "meta: B, 4" })]
        [Train(Loss.CrossEntropy, Optimizer.Adam, Epochs = 2, BatchSize = 32)]
        public partial class ImageAndMeta
        {
            [Conv2d(4, 3, Padding = 1)]                 public partial Conv2d Conv { get; }
            [ReLU]                                      public partial ReLU Act { get; }
            [Flatten]                                   public partial Flatten Flat { get; }
            [Linear(8, From = "meta")]                  public partial Linear Meta { get; }
            [Concat(nameof(Flat), nameof(Meta))]        public partial Concat Joined { get; }
            [Linear(10)]                                public partial Linear Head { get; }
        }
        """;

    [Fact]
    public void TwoInputs_MatchesSnapshot()
    {
        var run = GeneratorHarness.Run(GeneratorHarness.Usings + TwoInputs);
        run.AssertNoGeneratorCrash();
        Assert.Empty(run.ModelDiagnostics);
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        Snapshot.Match("ImageAndMeta", run.Source("Samples.Graphs.ImageAndMeta.Model.g.cs"));
    }

    [Fact]
    public void TwoInputs_SeedEachInputsShape_AndTheFirstLayerReadsTheFirstInput()
    {
        var run = GeneratorHarness.Run(GeneratorHarness.Usings + TwoInputs);
        var source = run.Source("ImageAndMeta.Model.g.cs");
        // Conv reads image (B, 1, 8, 8): 4·(1·9)+4 = 40; Meta reads meta (B, 4): 8·4+8 = 40; the Concat joins 256 + 8.
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Conv\", \"Conv2d\", \"(B, 4, 8, 8)\", 40L, new string[] { \"image\" })", source);
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Meta\", \"Linear\", \"(B, 8)\", 40L, new string[] { \"meta\" })", source);
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Joined\", \"Concat\", \"(B, 264)\", 0L, new string[] { \"Flat\", \"Meta\" })", source);
        Assert.Contains("public global::TorchSharp.torch.Tensor forward(global::TorchSharp.torch.Tensor image, global::TorchSharp.torch.Tensor meta)", source);
        // The packed row: image's 64 columns, then meta's 4.
        Assert.Contains("var image = input.narrow(1, 0L, 64L).reshape(input.shape[0], 1L, 8L, 8L);", source);
        Assert.Contains("var meta = input.narrow(1, 64L, 4L).reshape(input.shape[0], 4L);", source);
        Assert.Contains("new global::ModelDsl.InputSummary(\"image\", \"(B, 1, 8, 8)\"), new global::ModelDsl.InputSummary(\"meta\", \"(B, 4)\")", source);
        Assert.Contains("\"(B, 68)\"", source);
        var inference = run.Source("ImageAndMeta.Inference.g.cs");
        Assert.Contains("public global::TorchSharp.torch.Tensor Predict(global::TorchSharp.torch.Tensor image, global::TorchSharp.torch.Tensor meta, int batchSize", inference);
        Assert.Contains("public global::TorchSharp.torch.Tensor PredictProba(global::TorchSharp.torch.Tensor image, global::TorchSharp.torch.Tensor meta, int batchSize", inference);
        // The trainer's samples are the packed row.
        Assert.Contains("SampleShape = new long[] { 68 },", run.Source("ImageAndMeta.Train.g.cs"));
    }

    [Fact]
    public void InputAndInputs_ReportsMD0031_OnInput() => Markup.Verify("""
        [Model({|MD0031:Input = "B, 4"|}, Inputs = new[] { "a: B, 4", "b: B, 2" })]
        public partial class M
        {
            [Linear(3)] public partial Linear A { get; }
        }
        """);

    [Fact]
    public void OneEntry_ReportsMD0031_OnInputs() => Markup.Verify("""
        [Model({|MD0031:Inputs = new[] { "a: B, 4" }|})]
        public partial class M
        {
            [Linear(3)] public partial Linear A { get; }
        }
        """);

    [Fact]
    public void MalformedOrDuplicateOrSymbolicEntries_ReportMD0031_OnEachEntry() => Markup.Verify("""
        [Model(Inputs = new[] { "a: B, 4", {|MD0031:"b B, 4"|}, {|MD0031:"a: B, 2"|}, {|MD0031:"c: B, T"|}, {|MD0031:"d: N, 3"|}, {|MD0031:"1e: B, 3"|}, {|MD0031:"f: B, 0"|} })]
        public partial class M
        {
            [Linear(3)] public partial Linear A { get; }
        }
        """);

    [Fact]
    public void InputNamedLikeALayer_ReportsMD0031_OnTheEntry() => Markup.Verify("""
        [Model(Inputs = new[] { "a: B, 4", {|MD0031:"Head: B, 2"|} })]
        public partial class M
        {
            [Linear(3)] public partial Linear Head { get; }
        }
        """);

    [Fact]
    public void InputNamedLikeAGeneratedMember_OrOverflowingTheRow_ReportsMD0031_OnTheEntry() => Markup.Verify("""
        [Model(Inputs = new[] { "a: B, 4", {|MD0031:"forward: B, 2"|}, {|MD0031:"__Head: B, 2"|}, {|MD0031:"big: B, 2147483647, 2147483647, 2147483647"|} })]
        public partial class M
        {
            [Linear(3)] public partial Linear Head { get; }
        }
        """);

    [Fact]
    public void ABadEntry_IsMD0031Only_NotAlsoMD0022OnTheLayersReadingTheInputs() => Markup.Verify("""
        [Model(Inputs = new[] { "a: B, 4", {|MD0031:"b B, 2"|} })]
        public partial class M
        {
            [Linear(3, From = "b")] public partial Linear Head { get; }
        }
        """);

    [Fact]
    public void AnInputNobodyReads_ReportsMD0032_OnItsEntry()
    {
        var run = Markup.Verify("""
            [Model(Inputs = new[] { "a: B, 4", {|MD0032:"unused: B, 2"|} })]
            public partial class M
            {
                [Linear(3)] public partial Linear Head { get; }
            }
            """);
        // A warning: the model still generates, and compiles.
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        Assert.Contains("No layer of 'M' reads the input 'unused'", run.ModelDiagnostics.Single().GetMessage());
    }

    [Fact]
    public void InputIsNotASourceOfAModelWithSeveralInputs_ReportsMD0022_NamingTheInputs()
    {
        var run = Markup.Verify("""
            [Model(Inputs = new[] { "a: B, 4", "b: B, 4" })]
            public partial class M
            {
                [Linear(4)] public partial Linear A { get; }
                [Add(nameof(A), {|MD0022:"input"|})] public partial ModelDsl.Layers.Add Sum { get; }
            }
            """);
        Assert.Contains("an input: \"a\", \"b\"", run.ModelDiagnostics.Single().GetMessage());
    }

    [Fact]
    public void MergeOfTwoInputs_ChecksTheirShapes_MD0019()
    {
        var run = Markup.Verify("""
            [Model(Inputs = new[] { "a: B, 4", "b: B, 3" })]
            public partial class M
            {
                [{|MD0019:Add("a", "b")|}] public partial ModelDsl.Layers.Add Sum { get; }
            }
            """);
        Assert.Contains("(B, 4)", run.ModelDiagnostics.Single().GetMessage());
        Assert.Contains("(B, 3)", run.ModelDiagnostics.Single().GetMessage());
    }

    [Fact]
    public void ComposedModelWithSeveralInputs_ReportsMD0033_OnTheMember() => Markup.Verify("""
        [Model(Inputs = new[] { "a: B, 4", "b: B, 4" })]
        public partial class Two
        {
            [Add("a", "b")] public partial ModelDsl.Layers.Add Sum { get; }
        }

        [Model(Input = "B, 4")]
        public partial class Outer
        {
            public partial Two {|MD0033:Inner|} { get; }
        }
        """);

    [Fact]
    public void HandWrittenForward_ReportsMD0033_OnTheForward() => Markup.Verify("""
        [Model(Inputs = new[] { "a: B, 4", "b: B, 4" })]
        public partial class M
        {
            [Add("a", "b")] public partial ModelDsl.Layers.Add Sum { get; }
            public override Tensor {|MD0033:forward|}(Tensor x) => x;
        }
        """);

    [Fact]
    public void StructuredCutJoinedToANamedInput_ReportsMD0028_OnTargets() => Markup.Verify("""
        [Model(Inputs = new[] { "a: B, 4", "b: B, 4" })]
        [Train(Loss.CrossEntropy, Optimizer.SGD, Epochs = 1, BatchSize = 8)]
        [Prune(PruneMethod.Structured, 0.5, {|MD0028:Targets = new[] { nameof(A) }|})]
        public partial class M
        {
            [Linear(4)] public partial Linear A { get; }
            [Add(nameof(A), "b")] public partial ModelDsl.Layers.Add Sum { get; }
            [Linear(2)] public partial Linear Head { get; }
        }
        """);

    [Fact]
    public void GarbageInputs_NeverCrashTheGenerator()
    {
        foreach (var inputs in new[] { "null", "new string[0]", "new[] { (string)null, \"b: B, 2\" }", "new[] { \":\", \"b: B, 2\" }", "new[] { \"a:\", \"a: B, 2\" }" })
        {
            var run = GeneratorHarness.Run(GeneratorHarness.Usings + $$"""
                [Model(Inputs = {{inputs}})]
                public partial class M
                {
                    [Linear(3)] public partial Linear A { get; }
                }
                """);
            run.AssertNoGeneratorCrash();
            Assert.Contains(run.ModelDiagnostics, d => d.Id == "MD0031");
        }
    }
}
