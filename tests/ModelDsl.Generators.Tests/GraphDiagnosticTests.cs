using Microsoft.CodeAnalysis;

namespace ModelDsl.Generators.Tests;

/// <summary>Graph models (docs/graphs.md): From, merges, the output layer, repeated blocks — diagnostics by id and span, and the generated code.</summary>
public class GraphDiagnosticTests
{
    internal const string ResidualCnn = """
        using ModelDsl.Layers;
        namespace Samples.Graphs;

        /// <summary>A stem, one residual block and a projection shortcut, a concatenation of two branches, a gate.</summary>
        [Model(Input = "B, 1, 8, 8")]
        public partial class ResidualCnn
        {
            [Conv2d(8, 3, Padding = 1)]                      public partial Conv2d Stem { get; }
            [ReLU]                                           public partial ReLU StemAct { get; }
            [Conv2d(8, 3, Padding = 1)]                      public partial Conv2d Conv1 { get; }
            [BatchNorm2d]                                    public partial BatchNorm2d Norm1 { get; }
            [ReLU]                                           public partial ReLU Act1 { get; }
            [Conv2d(8, 3, Padding = 1)]                      public partial Conv2d Conv2 { get; }
            [Add(nameof(Conv2), nameof(StemAct))]            public partial Add Residual { get; }
            [Conv2d(4, 1, From = nameof(Residual))]          public partial Conv2d BranchA { get; }
            [Conv2d(4, 3, Padding = 1, From = nameof(Residual))] public partial Conv2d BranchB { get; }
            [Concat(nameof(BranchA), nameof(BranchB), Dim = 1)] public partial Concat Joined { get; }
            [Sigmoid(From = nameof(Joined))]                 public partial Sigmoid Gate { get; }
            [Multiply(nameof(Joined), nameof(Gate))]         public partial Multiply Gated { get; }
            [AdaptiveAvgPool2d(1)]                           public partial AdaptiveAvgPool2d Pool { get; }
            [Flatten]                                        public partial Flatten Flat { get; }
            [Linear(10)]                                     public partial Linear Output { get; }
        }
        """;

    [Fact]
    public void ResidualCnn_MatchesSnapshot()
    {
        var run = GeneratorHarness.Run(GeneratorHarness.Usings + ResidualCnn);
        run.AssertNoGeneratorCrash();
        Assert.Empty(run.ModelDiagnostics);
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        Snapshot.Match("ResidualCnn", run.Source("Samples.Graphs.ResidualCnn.Model.g.cs"));
    }

    [Fact]
    public void ResidualCnn_InfersEachLayerFromItsSources()
    {
        var source = GeneratorHarness.Run(GeneratorHarness.Usings + ResidualCnn).Source("ResidualCnn.Model.g.cs");
        // The merges keep (B, 8, 8, 8); the Concat joins 4 + 4 channels; the gate broadcasts nothing.
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Residual\", \"Add\", \"(B, 8, 8, 8)\", 0L, new string[] { \"Conv2\", \"StemAct\" })", source);
        Assert.Contains("new global::ModelDsl.LayerSummary(\"BranchA\", \"Conv2d\", \"(B, 4, 8, 8)\", 36L, new string[] { \"Residual\" })", source);
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Joined\", \"Concat\", \"(B, 8, 8, 8)\", 0L, new string[] { \"BranchA\", \"BranchB\" })", source);
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Stem\", \"Conv2d\", \"(B, 8, 8, 8)\", 80L, new string[] { \"input\" })", source);
        Assert.Contains("var residual = global::TorchSharp.torch.add(conv2, stemAct);", source);
        Assert.Contains("var joined = global::TorchSharp.torch.cat(new global::TorchSharp.torch.Tensor[] { branchA, branchB }, 1);", source);
        Assert.Contains("var gated = global::TorchSharp.torch.mul(joined, gate);", source);
        Assert.Contains("return output;", source);
    }

    [Fact]
    public void OutputLayer_IsWhatForwardReturns_AndTheLastLayerIsStillRead()
    {
        var run = GeneratorHarness.Run(GeneratorHarness.Usings + """
            [Model(Input = "B, 4", Output = nameof(Sum))]
            public partial class M
            {
                [Linear(4)] public partial Linear A { get; }
                [Linear(4, From = "input")] public partial Linear B { get; }
                [Add(nameof(A), nameof(B))] public partial ModelDsl.Layers.Add Sum { get; }
                [Linear(2)] public partial Linear Tail { get; }
            }
            """);
        // Tail runs after the output and feeds nothing: the one warning, and forward still returns Sum.
        Assert.Equal(new[] { "MD0024" }, run.ModelDiagnostics.Select(d => d.Id));
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        var source = run.Source("M.Model.g.cs");
        Assert.Contains("var tail = __Tail.call(sum);", source);
        Assert.Contains("return sum;", source);
        Assert.Contains("}, \"Sum\");", source);
    }

    [Fact]
    public void AddOfShapesThatDoNotBroadcast_ReportsMD0019_OnTheAttribute() => Markup.Verify("""
        [Model(Input = "B, 4")]
        public partial class M
        {
            [Linear(8)] public partial Linear A { get; }
            [Linear(3, From = "input")] public partial Linear B { get; }
            [{|MD0019:Add(nameof(A), nameof(B))|}] public partial ModelDsl.Layers.Add Sum { get; }
        }
        """);

    [Fact]
    public void MergeMessage_NamesBothSourcesAndShapes()
    {
        var run = GeneratorHarness.Run(GeneratorHarness.Usings + """
            [Model(Input = "B, 4")]
            public partial class M
            {
                [Linear(8)] public partial Linear A { get; }
                [Linear(3, From = "input")] public partial Linear B { get; }
                [Multiply(nameof(A), nameof(B))] public partial ModelDsl.Layers.Multiply Gate { get; }
            }
            """);
        var d = Assert.Single(run.ModelDiagnostics);
        Assert.Equal("MD0019", d.Id);
        Assert.Contains("'A' (B, 8)", d.GetMessage(), StringComparison.Ordinal);
        Assert.Contains("'B' (B, 3)", d.GetMessage(), StringComparison.Ordinal);
    }

    [Theory]
    // A size 1 stretches; symbols equal only the same symbol; a missing leading dim counts as 1.
    [InlineData("B, 4", "B, 1", true)]
    [InlineData("B, 4", "4", true)]
    [InlineData("B, T", "B, T", true)]
    [InlineData("B, T", "B, 4", false)]
    [InlineData("B, 3", "B, 4", false)]
    public void Broadcasting_FollowsPyTorch(string a, string b, bool ok)
    {
        var shapeA = Shapes.ShapeText.TryParse(a, out var da, out _) ? da : throw new InvalidOperationException();
        var shapeB = Shapes.ShapeText.TryParse(b, out var db, out _) ? db : throw new InvalidOperationException();
        var result = Shapes.LayerKind.Add.InferMerge(new Shapes.LayerParams(), new[] { "a", "b" }, new[] { shapeA, shapeB });
        Assert.Equal(ok, result.Error is null);
        if (ok) Assert.Equal(Shapes.ShapeText.Format(shapeA.Length >= shapeB.Length ? shapeA : shapeB).Replace(", 1)", ", 4)"), Shapes.ShapeText.Format(result.Output));
    }

    [Fact]
    public void ConcatDimOutOfRange_ReportsMD0020_OnDim() => Markup.Verify("""
        [Model(Input = "B, 4")]
        public partial class M
        {
            [Linear(8)] public partial Linear A { get; }
            [Linear(3, From = "input")] public partial Linear B { get; }
            [Concat(nameof(A), nameof(B), {|MD0020:Dim = 2|})] public partial ModelDsl.Layers.Concat Joined { get; }
        }
        """);

    [Fact]
    public void ConcatOfUnequalOtherDims_ReportsMD0020_OnTheAttribute() => Markup.Verify("""
        [Model(Input = "B, 4")]
        public partial class M
        {
            [Linear(8)] public partial Linear A { get; }
            [Linear(3, From = "input")] public partial Linear B { get; }
            [{|MD0020:Concat(nameof(A), nameof(B), Dim = 0)|}] public partial ModelDsl.Layers.Concat Joined { get; }
        }
        """);

    [Fact]
    public void ConcatAlongNegativeDim_AddsTheSizes()
    {
        var run = GeneratorHarness.Run(GeneratorHarness.Usings + """
            [Model(Input = "B, 4")]
            public partial class M
            {
                [Linear(8)] public partial Linear A { get; }
                [Linear(3, From = "input")] public partial Linear B { get; }
                [Concat(nameof(A), nameof(B), "input", Dim = -1)] public partial ModelDsl.Layers.Concat Joined { get; }
            }
            """);
        Assert.Empty(run.ModelDiagnostics);
        Assert.Contains("\"Joined\", \"Concat\", \"(B, 15)\"", run.Source("M.Model.g.cs"));
    }

    [Fact]
    public void ConcatOfOneSource_ReportsMD0021_OnTheAttribute() => Markup.Verify("""
        [Model(Input = "B, 4")]
        public partial class M
        {
            [Linear(8)] public partial Linear A { get; }
            [{|MD0021:Concat(nameof(A))|}] public partial ModelDsl.Layers.Concat Joined { get; }
        }
        """);

    [Fact]
    public void FromAnUnknownLayer_ReportsMD0022_OnFrom() => Markup.Verify("""
        [Model(Input = "B, 4")]
        public partial class M
        {
            [Linear(8)] public partial Linear A { get; }
            [Linear(3, {|MD0022:From = "Nowhere"|})] public partial Linear B { get; }
        }
        """);

    [Fact]
    public void FromALaterLayerOrItself_ReportsMD0022_OnEachSource() => Markup.Verify("""
        [Model(Input = "B, 4")]
        public partial class M
        {
            [Linear(8)] public partial Linear A { get; }
            [Add({|MD0022:nameof(C)|}, nameof(A))] public partial ModelDsl.Layers.Add Sum { get; }
            [Linear(8, {|MD0022:From = nameof(C)|})] public partial Linear C { get; }
            [Concat(nameof(A), {|MD0022:"D"|}, nameof(C))] public partial ModelDsl.Layers.Concat D { get; }
        }
        """);

    [Fact]
    public void OutputNamingNoLayer_ReportsMD0023_OnOutput() => Markup.Verify("""
        [Model(Input = "B, 4", {|MD0023:Output = "Head"|})]
        public partial class M
        {
            [Linear(8)] public partial Linear A { get; }
        }
        """);

    [Fact]
    public void LayerNothingReads_WarnsMD0024_OnTheAttribute() => Markup.Verify("""
        [Model(Input = "B, 4")]
        public partial class M
        {
            [Linear(8)] public partial Linear A { get; }
            [{|MD0024:Linear(8, From = "input")|}] public partial Linear Unused { get; }
            [Linear(2, From = nameof(A))] public partial Linear Head { get; }
        }
        """);

    [Fact]
    public void LayersAfterTheOutput_WarnMD0024() => Markup.Verify("""
        [Model(Input = "B, 4", Output = nameof(A))]
        public partial class M
        {
            [Linear(8)] public partial Linear A { get; }
            [{|MD0024:ReLU|}] public partial ReLU Act { get; }
        }
        """);

    [Fact]
    public void StructuredCutThroughAnAdd_CutsEveryProducerOfTheMerge_AndCountsIt()
    {
        // The group of A: A and B meet at Sum, Head reads it. Half of 8 channels go from each:
        // A 4·8 + 8 = 40 → 20, B 40 → 20, Head 8·2 + 2 = 18 → 10: 98 → 50.
        var run = Markup.Verify("""
            [Model(Input = "B, 4")]
            [Train(Loss.CrossEntropy, Optimizer.Adam)]
            [Prune(PruneMethod.Structured, 0.5, Targets = new[] { nameof(A) })]
            public partial class M
            {
                [Linear(8)] public partial Linear A { get; }
                [ReLU] public partial ReLU Act { get; }
                [Linear(8, From = "input")] public partial Linear B { get; }
                [Add(nameof(Act), nameof(B))] public partial ModelDsl.Layers.Add Sum { get; }
                [Linear(2)] public partial Linear Head { get; }
            }
            """);
        Assert.Empty(run.ModelDiagnostics);
        Assert.Contains("ParametersAfterPasses = 50,", run.Source("M.Train.g.cs"));
    }

    [Fact]
    public void StructuredCutInAChainPart_OfAGraphModel_IsAllowed()
    {
        var run = Markup.Verify("""
            [Model(Input = "B, 4")]
            [Train(Loss.CrossEntropy, Optimizer.Adam)]
            [Prune(PruneMethod.Structured, 0.5, Targets = new[] { nameof(Hidden) })]
            public partial class M
            {
                [Linear(8)] public partial Linear A { get; }
                [Linear(8, From = "input")] public partial Linear B { get; }
                [Add(nameof(A), nameof(B))] public partial ModelDsl.Layers.Add Sum { get; }
                [Linear(16)] public partial Linear Hidden { get; }
                [ReLU] public partial ReLU Act { get; }
                [Linear(2)] public partial Linear Head { get; }
            }
            """);
        Assert.Empty(run.ModelDiagnostics);
    }

    [Fact]
    public void StructuredCutWhoseOutputIsReadTwice_CutsBothReadersInputs()
    {
        // A 4·8 + 8 = 40 → 20; B and C read A: 8·8 + 8 = 72 → 4·8 + 8 = 40 each: 184 → 100.
        var run = Markup.Verify("""
            [Model(Input = "B, 4")]
            [Train(Loss.CrossEntropy, Optimizer.Adam)]
            [Prune(PruneMethod.Structured, 0.5, Targets = new[] { nameof(A) })]
            public partial class M
            {
                [Linear(8)] public partial Linear A { get; }
                [Linear(8)] public partial Linear B { get; }
                [Linear(8, From = nameof(A))] public partial Linear C { get; }
                [Concat(nameof(B), nameof(C), Dim = 1)] public partial ModelDsl.Layers.Concat Joined { get; }
            }
            """);
        Assert.Empty(run.ModelDiagnostics);
        Assert.Contains("ParametersAfterPasses = 100,", run.Source("M.Train.g.cs"));
    }

    [Fact]
    public void StructuredCutAfterAConcat_OffsetsTheConsumersInputs_AndCountsIt()
    {
        // BranchB's 4 channels are channels 2..5 of Joined (after BranchA's 2); a quarter of them is 1:
        // BranchB 8·4·9 + 4 = 292 → 219, Norm 12 → 10, Head 6·2 + 2 = 14 → 12 (sum 73 + 2 + 2 fewer).
        var run = Markup.Verify("""
            [Model(Input = "B, 8, 4, 4")]
            [Train(Loss.CrossEntropy, Optimizer.Adam)]
            [Prune(PruneMethod.Structured, 0.25, Targets = new[] { nameof(BranchB) })]
            public partial class M
            {
                [Conv2d(2, 1)] public partial Conv2d BranchA { get; }
                [Conv2d(4, 3, Padding = 1, From = "input")] public partial Conv2d BranchB { get; }
                [Concat(nameof(BranchA), nameof(BranchB), Dim = 1)] public partial ModelDsl.Layers.Concat Joined { get; }
                [BatchNorm2d] public partial BatchNorm2d Norm { get; }
                [Conv2d(2, 1)] public partial Conv2d Head { get; }
                [AdaptiveAvgPool2d(1)] public partial AdaptiveAvgPool2d Pool { get; }
                [Flatten] public partial Flatten Flat { get; }
            }
            """);
        Assert.Empty(run.ModelDiagnostics);
        // Before: BranchA 8·2 + 2 = 18, BranchB 292, Norm 12, Head 14: 336; after: 18 + 219 + 10 + 12 = 259.
        Assert.Contains("ParametersAfterPasses = 259,", run.Source("M.Train.g.cs"));
    }

    [Fact]
    public void StructuredCutReachingAComposedBlock_ReportsMD0027_OnTargets()
    {
        var run = Markup.Verify(Repeated.Replace("[Model(Input = \"B, 1, 8, 8\")]", """
            [Model(Input = "B, 1, 8, 8")]
            [Train(Loss.CrossEntropy, Optimizer.Adam)]
            [Prune(PruneMethod.Structured, 0.5, {|MD0027:Targets = new[] { nameof(Stem) }|})]
            """));
        Assert.Contains("composed model 'Stage1'", Assert.Single(run.ModelDiagnostics).GetMessage(), StringComparison.Ordinal);
    }

    [Fact]
    public void StructuredCutJoinedToTheInput_ReportsMD0028_OnTargets()
    {
        var run = Markup.Verify("""
            [Model(Input = "B, 8")]
            [Train(Loss.CrossEntropy, Optimizer.Adam)]
            [Prune(PruneMethod.Structured, 0.5, {|MD0028:Targets = new[] { nameof(A) }|})]
            public partial class M
            {
                [Linear(8)] public partial Linear A { get; }
                [ReLU] public partial ReLU Act { get; }
                [Add(nameof(Act), "input")] public partial ModelDsl.Layers.Add Sum { get; }
                [Linear(2)] public partial Linear Head { get; }
            }
            """);
        Assert.Equal("Structured pruning of 'A': its channel group 'A' (joined by 'Sum') is joined to the model input, whose channels are fixed",
            Assert.Single(run.ModelDiagnostics).GetMessage());
    }

    [Fact]
    public void StructuredCutReachingTheOutput_ReportsMD0029_OnTargets()
    {
        var run = Markup.Verify("""
            [Model(Input = "B, 4")]
            [Train(Loss.CrossEntropy, Optimizer.Adam)]
            [Prune(PruneMethod.Structured, 0.5, {|MD0029:Targets = new[] { nameof(A) }|})]
            public partial class M
            {
                [Linear(8)] public partial Linear A { get; }
                [Linear(8, From = "input")] public partial Linear B { get; }
                [Add(nameof(A), nameof(B))] public partial ModelDsl.Layers.Add Sum { get; }
            }
            """);
        Assert.Equal("Structured pruning of 'A': its channel group 'A', 'B' (joined by 'Sum') reaches 'Sum', the model's output, whose shape is fixed",
            Assert.Single(run.ModelDiagnostics).GetMessage());
    }

    [Fact]
    public void StructuredCutSpanningTwoConcatSources_ReportsMD0030_OnTargets()
    {
        // Wide's 8 channels meet Joined's, which are BranchA's 4 and BranchB's 4: no one producer to cut with them.
        var run = Markup.Verify("""
            [Model(Input = "B, 2, 4, 4")]
            [Train(Loss.CrossEntropy, Optimizer.Adam)]
            [Prune(PruneMethod.Structured, 0.5, {|MD0030:Targets = new[] { nameof(Wide) }|})]
            public partial class M
            {
                [Conv2d(4, 1)] public partial Conv2d BranchA { get; }
                [Conv2d(4, 1, From = "input")] public partial Conv2d BranchB { get; }
                [Concat(nameof(BranchA), nameof(BranchB))] public partial ModelDsl.Layers.Concat Joined { get; }
                [Conv2d(8, 1, From = "input")] public partial Conv2d Wide { get; }
                [Add(nameof(Joined), nameof(Wide))] public partial ModelDsl.Layers.Add Sum { get; }
                [Conv2d(2, 1)] public partial Conv2d Head { get; }
                [AdaptiveAvgPool2d(1)] public partial AdaptiveAvgPool2d Pool { get; }
                [Flatten] public partial Flatten Flat { get; }
            }
            """);
        Assert.Contains("would break the merge 'Joined'", Assert.Single(run.ModelDiagnostics).GetMessage(), StringComparison.Ordinal);
    }

    [Fact]
    public void ChainModel_HasNoFromColumn_AndNoSourcesInItsSummary()
    {
        var source = GeneratorHarness.Run(GeneratorHarness.Usings + SnapshotTests.DigitsMlp).Source("DigitsMlp.Model.g.cs");
        Assert.DoesNotContain("From", source.Split('\n').First(l => l.Contains("Output shape", StringComparison.Ordinal)), StringComparison.Ordinal);
        Assert.DoesNotContain("new string[] { \"input\" }", source, StringComparison.Ordinal);
    }

    [Fact]
    public void GraphTable_HasAFromColumn()
    {
        var source = GeneratorHarness.Run(GeneratorHarness.Usings + ResidualCnn).Source("ResidualCnn.Model.g.cs");
        var header = source.Split('\n').First(l => l.Contains("Output shape", StringComparison.Ordinal));
        Assert.Contains("From", header, StringComparison.Ordinal);
        Assert.Contains(source.Split('\n'), l => l.Contains("Residual", StringComparison.Ordinal) && l.Contains("Conv2, StemAct", StringComparison.Ordinal));
    }

    internal const string Repeated = """
        namespace Samples.Graphs;

        [Model(Input = "B, 8, H, W")]
        public partial class Block
        {
            [Conv2d(8, 8, 3, Padding = 1)] public partial Conv2d Conv1 { get; }
            [ReLU]                        public partial ReLU Act { get; }
            [Add(nameof(Act), "input")]   public partial ModelDsl.Layers.Add Residual { get; }
        }

        [Model(Input = "B, 1, 8, 8")]
        public partial class Stack
        {
            [Conv2d(8, 3, Padding = 1)]  public partial Conv2d Stem { get; }
            [Block(Repeat = 3)]          public partial Block Stage1 { get; }
            [Flatten]                    public partial Flatten Flat { get; }
            [Linear(10)]                 public partial Linear Head { get; }
        }
        """;

    [Fact]
    public void RepeatedBlock_IsThreeCopies_CountedThreeTimes()
    {
        var run = GeneratorHarness.Run(GeneratorHarness.Usings + Repeated);
        run.AssertNoGeneratorCrash();
        Assert.Empty(run.ModelDiagnostics);
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        var source = run.Source("Samples.Graphs.Stack.Model.g.cs");
        // One block: 8*8*9 + 8 = 584 parameters; three copies.
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Stage1\", \"Block\", \"(B, 8, 8, 8)\", 1752L)", source);
        Assert.Contains("new global::ModelDsl.Layers.Repeated(3, () => new global::Samples.Graphs.Block(), \"(B, 8, 8, 8)\")", source);
    }

    [Fact]
    public void RepeatBelowOne_ReportsMD0025_OnRepeat() => Markup.Verify(Repeated.Replace("[Block(Repeat = 3)]", "[Block({|MD0025:Repeat = 0|})]"));

    [Fact]
    public void RepeatedBlockChangingItsShape_ReportsMD0026_OnRepeat() => Markup.Verify("""
        [Model(Input = "B, 8")]
        public partial class Widen
        {
            [Linear(16)] public partial Linear Up { get; }
        }

        [Model(Input = "B, 8")]
        public partial class M
        {
            [Block({|MD0026:Repeat = 2|})] public partial Widen Twice { get; }
        }
        """);

    [Fact]
    public void BlockFrom_ReadsTheNamedLayer() => Markup.Verify("""
        [Model(Input = "B, 8")]
        public partial class Inner
        {
            [Linear(8)] public partial Linear Mix { get; }
        }

        [Model(Input = "B, 8")]
        public partial class M
        {
            [Linear(8)] public partial Linear A { get; }
            [Linear(8, From = "input")] public partial Linear B { get; }
            [Block(From = nameof(A))] public partial Inner FromA { get; }
            [Add(nameof(FromA), nameof(B))] public partial ModelDsl.Layers.Add Sum { get; }
            [Block({|MD0022:From = "Later"|})] public partial Inner Bad { get; }
            [Linear(8)] public partial Linear Later { get; }
        }
        """);

    [Fact]
    public void FromOnAMerge_ReportsMD0022_OnFrom() => Markup.Verify("""
        [Model(Input = "B, 4")]
        public partial class M
        {
            [Linear(4)] public partial Linear A { get; }
            [Linear(4, From = "input")] public partial Linear B { get; }
            [Add(nameof(A), nameof(B), {|MD0022:From = nameof(A)|})] public partial ModelDsl.Layers.Add Sum { get; }
        }
        """);

    [Fact]
    public void ALayerNamedInput_MakesTheSourceInputAmbiguous_ReportsMD0022() => Markup.Verify("""
        [Model(Input = "B, 4")]
        public partial class M
        {
            [{|MD0022:Linear(4)|}] public partial Linear A { get; }
            [Linear(4, From = nameof(A))] public partial Linear input { get; }
            [Add(nameof(A), {|MD0022:"input"|})] public partial ModelDsl.Layers.Add Sum { get; }
        }
        """);

    [Fact]
    public void MergeOfASizeKnownOnlyAtRunTime_IsLeftToLibtorch()
    {
        var run = GeneratorHarness.Run(GeneratorHarness.Usings + """
            [Model(Input = "B, 1, H, W")]
            public partial class M
            {
                [Conv2d(4, 3, Stride = 2)] public partial Conv2d Down { get; }
                [AdaptiveAvgPool2d(5)] public partial AdaptiveAvgPool2d Pooled { get; }
                [Add(nameof(Down), nameof(Pooled))] public partial ModelDsl.Layers.Add Sum { get; }
            }
            """);
        run.AssertNoGeneratorCrash();
        Assert.Empty(run.ModelDiagnostics);
        // Down is (B, 4, ?, ?): the '?' cannot be proven wrong, and the known side gives the output.
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Sum\", \"Add\", \"(B, 4, 5, 5)\"", run.Source("M.Model.g.cs"));
    }

    private const string InnerBlock = """
        using TorchSharp;
        [Model(Input = "B, 8")]
        public partial class Inner { [Linear(8)] public partial Linear Mix { get; } }

        """;

    [Fact]
    public void RepeatedBlockReadThroughItsProperty_InAHandWrittenForward_ReportsMD0035_OnTheRead() => Markup.Verify(InnerBlock + """
        [Model(Input = "B, 8")]
        public partial class {|MD0013:M|}
        {
            [Block(Repeat = 3)] public partial Inner Stage1 { get; }
            [Linear(8, 2)] public partial Linear Head { get; }
            public override torch.Tensor forward(torch.Tensor x) => Head.call({|MD0035:Stage1|}.call(x));
        }
        """);

    [Fact]
    public void RepeatedBlockRunThroughItsSlot_InAHandWrittenForward_IsFine() => Markup.Verify(InnerBlock + """
        [Model(Input = "B, 8")]
        public partial class {|MD0013:M|}
        {
            [Block(Repeat = 3)] public partial Inner Stage1 { get; }
            [Linear(8, 2)] public partial Linear Head { get; }
            public override torch.Tensor forward(torch.Tensor x) => Head.call(GetLayer(nameof(Stage1)).call(x));
        }
        """);

    [Fact]
    public void MergeCalledThroughForward_InAHandWrittenForward_IsNotMD0017() => Markup.Verify("""
        using TorchSharp;
        [Model(Input = "B, 4")]
        public partial class {|MD0013:M|}
        {
            [Linear(4, 4)] public partial Linear A { get; }
            [Linear(4, 4, From = "input")] public partial Linear B { get; }
            [Add(nameof(A), nameof(B))] public partial ModelDsl.Layers.Add Sum { get; }
            public override torch.Tensor forward(torch.Tensor x) => Sum.forward(A.call(x), B.call(x));
        }
        """);

    [Fact]
    public void StructuredCutThroughAPooledFlatten_ShrinksTheHead_AndCountsIt()
    {
        // Conv → AdaptiveAvgPool2d(1) → Flatten → Linear: each channel is one input of the head (a ResNet's last stage).
        // Half of Conv's 8 channels: Conv 1·8·9 + 8 = 80 → 40, Head 8·10 + 10 = 90 → 50.
        var run = Markup.Verify("""
            [Model(Input = "B, 1, 8, 8")]
            [Train(Loss.CrossEntropy, Optimizer.Adam)]
            [Prune(PruneMethod.Structured, 0.5, Targets = new[] { nameof(Conv) })]
            public partial class M
            {
                [Conv2d(8, 3, Padding = 1)] public partial Conv2d Conv { get; }
                [ReLU] public partial ReLU Act { get; }
                [AdaptiveAvgPool2d(1)] public partial AdaptiveAvgPool2d Pool { get; }
                [Flatten] public partial Flatten Flat { get; }
                [Linear(10)] public partial Linear Head { get; }
            }
            """);
        Assert.Empty(run.ModelDiagnostics);
        Assert.Contains("ParametersAfterPasses = 90,", run.Source("M.Train.g.cs"));
    }

    [Fact]
    public void CoupledTargets_WithACount_AreNotCheckedAgainstWhatTheFirstCutLeft()
    {
        // Stem and Conv2 are one group (the Add): cutting 5 of Stem's 8 channels cuts Conv2's too, and Conv2 is skipped
        // rather than checked against the 3 channels it has left.
        var run = Markup.Verify("""
            [Model(Input = "B, 1, 8, 8")]
            [Train(Loss.CrossEntropy, Optimizer.Adam)]
            [Prune(PruneMethod.Structured, 5, Targets = new[] { nameof(Stem), nameof(Conv2) })]
            public partial class M
            {
                [Conv2d(8, 3, Padding = 1)] public partial Conv2d Stem { get; }
                [Conv2d(8, 3, Padding = 1)] public partial Conv2d Conv2 { get; }
                [Add(nameof(Stem), nameof(Conv2))] public partial ModelDsl.Layers.Add Sum { get; }
                [Conv2d(4, 1)] public partial Conv2d Head { get; }
                [AdaptiveAvgPool2d(1)] public partial AdaptiveAvgPool2d Pool { get; }
                [Flatten] public partial Flatten Flat { get; }
            }
            """);
        Assert.Empty(run.ModelDiagnostics);
    }

    [Fact]
    public void StructuredCutOfATensorConcatenatedWithItself_ReportsMD0030_OnTargets() => Markup.Verify("""
        [Model(Input = "B, 1, 8, 8")]
        [Train(Loss.CrossEntropy, Optimizer.Adam)]
        [Prune(PruneMethod.Structured, 0.5, {|MD0030:Targets = new[] { nameof(A) }|})]
        public partial class M
        {
            [Conv2d(4, 3, Padding = 1)] public partial Conv2d A { get; }
            [ReLU] public partial ReLU Act { get; }
            [Concat(nameof(A), nameof(Act), Dim = 1)] public partial ModelDsl.Layers.Concat Both { get; }
            [Conv2d(2, 1)] public partial Conv2d Head { get; }
            [AdaptiveAvgPool2d(1)] public partial AdaptiveAvgPool2d Pool { get; }
            [Flatten] public partial Flatten Flat { get; }
        }
        """);

    // Residual blocks for cuts inside blocks: Conv1 → Norm1 → ReLU → Conv2, plus the input. Per block: Conv1 8·8·9 + 8 =
    // 584, Norm1 16, Conv2 584: 1,184; Stem 80, Stage1 (two copies) 2,368, Stage2 1,184, Head 90: 3,722.
    internal const string ResidualStages = """
        namespace Samples.Graphs;

        [Model(Input = "B, 8, H, W")]
        public partial class Res
        {
            [Conv2d(8, 3, Padding = 1)]    public partial Conv2d Conv1 { get; }
            [BatchNorm2d]                  public partial BatchNorm2d Norm1 { get; }
            [ReLU]                         public partial ReLU Act1 { get; }
            [Conv2d(8, 3, Padding = 1)]    public partial Conv2d Conv2 { get; }
            [Add(nameof(Conv2), "input")]  public partial ModelDsl.Layers.Add Sum { get; }
        }

        [Model(Input = "B, 1, 8, 8")]
        [Train(Loss.CrossEntropy, Optimizer.Adam)]
        PLAN
        public partial class Stages
        {
            [Conv2d(8, 3, Padding = 1)]  public partial Conv2d Stem { get; }
            [Block(Repeat = 2)]          public partial Res Stage1 { get; }
            [Block]                      public partial Res Stage2 { get; }
            [AdaptiveAvgPool2d(1)]       public partial AdaptiveAvgPool2d Pool { get; }
            [Flatten]                    public partial Flatten Flat { get; }
            [Linear(10)]                 public partial Linear Head { get; }
        }
        """;

    [Theory]
    // Half of one copy's inner channels: Conv1 loses 4 rows of 8·9 + 1, Norm1 4·2, Conv2 4 input columns of 8·9: 588.
    [InlineData("\"Stage1.1.Conv1\"", 3722 - 588)]
    // Every copy of Stage1 and the single block Stage2: three cuts.
    [InlineData("\"Stage1.*.Conv1\", \"Stage2.Conv1\"", 3722 - 3 * 588)]
    // Listing a copy twice (by index and by '*') cuts it once.
    [InlineData("\"Stage1.0.Conv1\", \"Stage1.*.Conv1\"", 3722 - 2 * 588)]
    public void StructuredCutInsideABlock_CutsThatCopy_AndCountsIt(string targets, long after)
    {
        var run = Markup.Verify(ResidualStages.Replace("PLAN", $"[Prune(PruneMethod.Structured, 0.5, Targets = new[] {{ {targets} }})]"));
        Assert.Empty(run.ModelDiagnostics);
        Assert.Contains($"ParametersAfterPasses = {after},", run.Source("Samples.Graphs.Stages.Train.g.cs"));
    }

    [Fact]
    public void UnstructuredPruneInsideABlock_KeepsTheCount()
    {
        var run = Markup.Verify(ResidualStages.Replace("PLAN", "[Prune(PruneMethod.L1Unstructured, 0.5, Targets = new[] { \"Stage1.*.Conv2\", \"Stem\" })]"));
        Assert.Empty(run.ModelDiagnostics);
        Assert.Contains("ParametersAfterPasses = 3722,", run.Source("Samples.Graphs.Stages.Train.g.cs"));
    }

    [Fact]
    public void StructuredCutInsideABlockReachingItsBoundary_ReportsMD0036_OnTargets()
    {
        // Conv2's channels are the block's output (Sum), which also joins them to its input: the first boundary found is named.
        var run = Markup.Verify(ResidualStages.Replace("PLAN", "[Prune(PruneMethod.Structured, 0.5, {|MD0036:Targets = new[] { \"Stage1.0.Conv2\" }|})]"));
        Assert.Equal("Structured pruning of 'Stage1.0.Conv2': its channel group 'Stage1.0.Conv2' (joined by 'Stage1.0.Sum') reaches the output of the block 'Stage1.0', " +
            "whose channels the layers around the block make or read; a cut inside a block stays inside it", Assert.Single(run.ModelDiagnostics).GetMessage());
    }

    [Theory]
    [InlineData("Stage1.2.Conv1", "is not a layer of the model: 'Stage1' has no layer '2' (its layers: 0, 1)")]
    [InlineData("Stage2.Conv9", "is not a layer of the model: 'Stage2' has no layer 'Conv9' (its layers: Conv1, Norm1, Act1, Conv2, Sum)")]
    [InlineData("Stem.Conv1", "is not a layer of the model: 'Stem' is a layer, not a composed model or repeated block, so it has no layer 'Conv1'")]
    [InlineData("Stage1.*", "is not a layer of the model: 'Stage1' has no layer '*' (its layers: 0, 1)")]
    [InlineData("*.Conv1", "is not a layer of the model: 'Stage1' has no layer 'Conv1' (its layers: 0, 1)")]
    public void UnknownPathInsideABlock_ReportsMD0302_WithThePath(string target, string reason)
    {
        var run = Markup.Verify(ResidualStages.Replace("PLAN", $"[Prune(PruneMethod.Structured, 0.5, {{|MD0302:Targets = new[] {{ \"{target}\" }}|}})]"));
        var message = Assert.Single(run.ModelDiagnostics).GetMessage();
        Assert.Contains($"'{target}' {reason}", message, StringComparison.Ordinal);
    }
}
