using Microsoft.CodeAnalysis;

namespace ModelDsl.Generators.Tests;

/// <summary>The generated code for representative models: snapshotted, and compiled with no warning.</summary>
public class SnapshotTests
{
    internal const string DigitsMlp = """
        namespace Samples.Digits;

        [Model(Input = "B, 64")]
        public partial class DigitsMlp
        {
            [Linear(128)]  public partial Linear Hidden { get; }
            [ReLU]         public partial ReLU Act { get; }
            [Dropout(0.1)] public partial Dropout Drop { get; }
            [Linear(10)]   public partial Linear Output { get; }
        }
        """;

    internal const string DigitsCnn = """
        namespace Samples.Digits;

        [Model(Input = "B, 1, 8, 8")]
        public partial class DigitsCnn
        {
            [Conv2d(16, 3, Padding = 1)] public partial Conv2d Conv1 { get; }
            [BatchNorm2d]                public partial BatchNorm2d Norm1 { get; }
            [ReLU]                       public partial ReLU Act1 { get; }
            [Conv2d(16, 32, 3, Stride = 2, Padding = 1, Bias = false)] public partial Conv2d Conv2 { get; }
            [SiLU]                       public partial SiLU Act2 { get; }
            [AvgPool2d(2)]               public partial AvgPool2d Pool { get; }
            [AdaptiveAvgPool2d(1)]       public partial AdaptiveAvgPool2d Gap { get; }
            [Flatten]                    public partial Flatten Flat { get; }
            [Linear(10)]                 public partial Linear Output { get; }
            [LogSoftmax(1)]              public partial LogSoftmax LogProbs { get; }
        }
        """;

    internal const string CharModel = """
        namespace Samples.Text;

        /// <summary>Embeds token ids and mixes them; T binds to the caller's sequence length.</summary>
        [Model(Input = "B, T, 32")]
        public partial class MixBlock
        {
            [LayerNorm]   public partial LayerNorm Norm { get; }
            [Linear(64)]  public partial Linear Up { get; }
            [GELU]        public partial GELU Act { get; }
            [Linear(32)]  public partial Linear Down { get; }
        }

        [Model(Input = "B, 16", InputType = DType.Int64)]
        public partial class CharModel
        {
            [Embedding(65, 32)] public partial Embedding Embed { get; }
            public partial MixBlock Block1 { get; }
            public partial MixBlock Block2 { get; }
            [Flatten]           public partial Flatten Flat { get; }
            [Linear(65)]        internal partial Linear Head { get; }
            [Softmax(-1)]       public partial Softmax Probs { get; }
        }
        """;

    internal const string NestedWithFields = """
        using TorchSharp;
        namespace Samples;

        public static partial class Zoo
        {
            [Model(Input = "B, 3, 16")]
            internal partial class Wave
            {
                [Conv1d(8, 5, Dilation = 2, Padding = 4)] private readonly Conv1d conv = null!;
                [Tanh]                                       private Tanh act = null!;
                [BatchNorm1d(8)]                             public partial BatchNorm1d Norm { get; }
                [Sigmoid]                                    public partial Sigmoid Gate { get; }
                [Identity]                                   public partial Identity Out { get; }

                public Conv1d Conv => conv;
            }

            [Model(Input = "B, 4")]
            public partial class Custom
            {
                [Linear(4, 8)] public partial Linear A { get; }
                [Linear(8, 2)] public partial Linear B { get; }
                public override torch.Tensor forward(torch.Tensor x) => B.call(torch.nn.functional.relu(A.call(x)));
            }
        }
        """;

    [Theory]
    [InlineData(nameof(DigitsMlp), DigitsMlp, "Samples.Digits.DigitsMlp.Model.g.cs")]
    [InlineData(nameof(DigitsCnn), DigitsCnn, "Samples.Digits.DigitsCnn.Model.g.cs")]
    [InlineData("CharModel", CharModel, "Samples.Text.CharModel.Model.g.cs")]
    [InlineData("MixBlock", CharModel, "Samples.Text.MixBlock.Model.g.cs")]
    [InlineData("Wave", NestedWithFields, "Samples.Zoo.Wave.Model.g.cs")]
    [InlineData("Custom", NestedWithFields, "Samples.Zoo.Custom.Model.g.cs")]
    [InlineData("TinyGpt", TransformerDiagnosticTests.TinyGpt, "Samples.Text.TinyGpt.Model.g.cs")]
    [InlineData("TinyGpt.Train", TransformerDiagnosticTests.TinyGpt, "Samples.Text.TinyGpt.Train.g.cs")]
    [InlineData("SequenceTagger", RecurrentDiagnosticTests.SequenceTagger, "Samples.Text.SequenceTagger.Model.g.cs")]
    public void GeneratedModel_MatchesSnapshot(string name, string source, string hintName)
    {
        var run = GeneratorHarness.Run(GeneratorHarness.Usings + source);
        run.AssertNoGeneratorCrash();
        // MD0013 only says that Custom's hand-written forward leaves its shapes unchecked, which is intended here.
        Assert.DoesNotContain(run.ModelDiagnostics, d => d.Severity > DiagnosticSeverity.Info && d.Id != "MD0013");
        Snapshot.Match(name, run.Source(hintName));
    }

    [Theory]
    [InlineData(DigitsMlp)]
    [InlineData(DigitsCnn)]
    [InlineData(CharModel)]
    [InlineData(NestedWithFields)]
    [InlineData(TransformerDiagnosticTests.TinyGpt)]
    [InlineData(RecurrentDiagnosticTests.SequenceTagger)]
    public void GeneratedCode_CompilesWithoutWarnings(string source)
    {
        var run = GeneratorHarness.Run(GeneratorHarness.Usings + source);
        Assert.NotEmpty(run.Result.GeneratedTrees);
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
    }

    /// <summary>
    /// Every generated member carries [GeneratedCode] (and the class itself does not: on a partial class the attribute
    /// would also mark the user's own members as generated, so analyzers and coverage would skip them); every member a
    /// caller can see has XML docs, so a consumer with GenerateDocumentationFile gets no CS1591 from generated code.
    /// </summary>
    [Theory]
    [InlineData(DigitsMlp + "\n[Train(Loss.CrossEntropy, Optimizer.Adam)] public partial class DigitsMlp { }")]
    [InlineData(CharModel)]
    [InlineData(NestedWithFields)]
    [InlineData(TransformerDiagnosticTests.TinyGpt)]
    [InlineData(RecurrentDiagnosticTests.SequenceTagger)]
    public void GeneratedMembers_CarryGeneratedCodeAndVisibleOnesXmlDocs(string source)
    {
        var run = GeneratorHarness.Run(GeneratorHarness.Usings + source);
        Assert.DoesNotContain(run.ModelDiagnostics, d => d.Severity == DiagnosticSeverity.Error);
        int members = 0;
        foreach (var tree in run.Result.GeneratedTrees)
        {
            foreach (var type in tree.GetRoot().DescendantNodes().OfType<Microsoft.CodeAnalysis.CSharp.Syntax.ClassDeclarationSyntax>())
            {
                Assert.DoesNotContain(type.AttributeLists.SelectMany(l => l.Attributes), a => a.ToString().Contains("GeneratedCode", StringComparison.Ordinal));
                foreach (var member in type.Members.Where(m => m is not Microsoft.CodeAnalysis.CSharp.Syntax.BaseTypeDeclarationSyntax))
                {
                    members++;
                    string where = tree.FilePath + ": " + member.ToString().Split('\n')[0];
                    Assert.True(member.AttributeLists.SelectMany(l => l.Attributes).Any(a => a.ToString() == $"global::System.CodeDom.Compiler.GeneratedCode(\"ModelDsl.Generators\", \"{GeneratorInfo.Version}\")"), "no [GeneratedCode] on " + where);
                    bool visible = member.Modifiers.Any(m => m.Text is "public" or "protected" or "internal")
                        || member is Microsoft.CodeAnalysis.CSharp.Syntax.MethodDeclarationSyntax { Identifier.Text: "OnCreated" };
                    if (visible)
                        Assert.True(member.GetLeadingTrivia().Any(t => t.IsKind(Microsoft.CodeAnalysis.CSharp.SyntaxKind.SingleLineDocumentationCommentTrivia)), "no XML docs on " + where);
                }
            }
        }
        Assert.True(members > 20, $"only {members} generated members seen");
    }

    [Fact]
    public void InferredShapes_MatchHandComputedValues()
    {
        var source = GeneratorHarness.Run(GeneratorHarness.Usings + DigitsCnn).Source("DigitsCnn.Model.g.cs");
        // (8 + 2*1 - 3)/1 + 1 = 8; conv2: floor((8 + 2 - 3)/2) + 1 = 4; avgpool 2 -> 2; gap -> 1.
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Conv1\", \"Conv2d\", \"(B, 16, 8, 8)\", 160L)", source);
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Norm1\", \"BatchNorm2d\", \"(B, 16, 8, 8)\", 32L)", source);
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Conv2\", \"Conv2d\", \"(B, 32, 4, 4)\", 4608L)", source);
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Pool\", \"AvgPool2d\", \"(B, 32, 2, 2)\", 0L)", source);
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Gap\", \"AdaptiveAvgPool2d\", \"(B, 32, 1, 1)\", 0L)", source);
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Flat\", \"Flatten\", \"(B, 32)\", 0L)", source);
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Output\", \"Linear\", \"(B, 10)\", 330L)", source);

        var chars = GeneratorHarness.Run(GeneratorHarness.Usings + CharModel).Source("CharModel.Model.g.cs");
        // MixBlock: LayerNorm 2*32 + Linear 32*64+64 + Linear 64*32+32 = 64 + 2112 + 2080 = 4256.
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Block1\", \"MixBlock\", \"(B, 16, 32)\", 4256L)", chars);
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Flat\", \"Flatten\", \"(B, 512)\", 0L)", chars);
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Head\", \"Linear\", \"(B, 65)\", 33345L)", chars);
    }
}
