using ModelDsl.Shapes;

namespace ModelDsl.Generators.Tests;

/// <summary>
/// The "adding a layer kind" recipe (README.md, Architecture), proven with [LeakyReLU]: its attribute in src/Dsl, its
/// descriptor (src/Shared/Layers/LeakyReLUKind.cs) and its registry line are all it took, and the generator parses it,
/// checks its shapes, emits it and lets a structured cut pass through it. The runtime tests' LayerKindRecipeTests run it.
/// </summary>
public class LayerKindRecipeTests
{
    private const string Train = "[Train(Loss.CrossEntropy, Optimizer.SGD, Data = \"train.csv\")]\n";

    [Fact]
    public void LeakyReLU_IsParsedShapeCheckedAndEmitted_WithItsOwnArgument()
    {
        var run = Markup.Verify("""
            [Model(Input = "B, 1, 8, 8")]
            public partial class M
            {
                [Conv2d(4, 3)]     public partial Conv2d Conv { get; }
                [LeakyReLU(0.2)]   public partial LeakyReLU Act { get; }
                [Flatten]          public partial Flatten Flat { get; }
                [LeakyReLU]        public partial LeakyReLU Act2 { get; }
                [Linear(3)]        public partial Linear Head { get; }
            }
            """);
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        var source = run.Source("M.Model.g.cs");
        Assert.Contains("__Act = global::TorchSharp.torch.nn.LeakyReLU(0.2);", source);
        Assert.Contains("__Act2 = global::TorchSharp.torch.nn.LeakyReLU(0.01);", source); // PyTorch's default slope
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Act\", \"LeakyReLU\", \"(B, 4, 6, 6)\", 0L)", source);
        Assert.Contains("new global::ModelDsl.LayerSummary(\"Head\", \"Linear\", \"(B, 3)\", 435L)", source); // 144·3 + 3
        Assert.Contains("x = __Act.call(x);", source);
    }

    [Theory]
    [InlineData("B, 4", "Int64", "[{|MD0107:LeakyReLU(0.2)|}] public partial LeakyReLU Act { get; }")]
    [InlineData("B, 4", "Float32", "[LeakyReLU] public partial {|MD0006:ReLU|} Act { get; }")]
    [InlineData("B, 4", "Float32", "[LeakyReLU] public partial LeakyReLU Act { get; }\n[Linear({|MD0101:5|}, 2)] public partial Linear Head { get; }")]
    public void BadLeakyReLUModels_AreReportedWhereTheyAreWritten(string input, string inputType, string layers) =>
        Markup.Verify($"[Model(Input = \"{input}\", InputType = DType.{inputType})]\npublic partial class M\n{{\n{layers}\n}}");

    [Fact]
    public void StructuredCut_PassesThroughLeakyReLU_AsItsDescriptorSays()
    {
        // Half of Hidden's 32 neurons go: Hidden 64·16 + 16 = 1,040, Output 16·10 + 10 = 170.
        var run = Markup.Verify($$"""
            [Model(Input = "B, 64")]
            {{Train}}[Prune(PruneMethod.Structured, 0.5, Targets = new[] { "Hidden" })]
            public partial class M
            {
                [Linear(32)]      public partial Linear Hidden { get; }
                [LeakyReLU(0.1)]  public partial LeakyReLU Act { get; }
                [Linear(10)]      public partial Linear Output { get; }
            }
            """);
        Assert.Contains("ParametersAfterPasses = 1210,", run.Source("M.Train.g.cs"));
    }

    [Theory]
    [InlineData("5", "")]         // the kernel's width: dim 3 of the (out, in, kH, kW) weight
    [InlineData("{|MD0301:6|}", "")]
    [InlineData("3", ", Dim = 2")] // its height
    [InlineData("{|MD0301:4|}", ", Dim = 2")]
    public void LnStructuredOverAKernelDim_CountsThatDimsSize_FromTheConvolutionsDescriptor(string count, string dim) =>
        Markup.Verify($$"""
            [Model(Input = "B, 1, 8, 8")]
            {{Train}}[Prune(PruneMethod.LnStructured, {{count}}, Targets = new[] { "Conv" }{{(dim.Length > 0 ? dim : ", Dim = 3")}})]
            public partial class M
            {
                [Conv2d(4, new[] { 3, 5 })] public partial Conv2d Conv { get; }
                [Flatten]                   public partial Flatten Flat { get; }
                [Linear(2)]                 public partial Linear Head { get; }
            }
            """);

    [Fact]
    public void Registry_FindsEachKindByItsAttributeAndModule_AndListsItInTheNotALayerMessage()
    {
        Assert.True(LayerKind.TryGet("LeakyReLU", out var kind));
        Assert.Same(LayerKind.LeakyReLU, kind);
        Assert.Same(LayerKind.LeakyReLU, LayerKind.ForModule("TorchSharp.Modules.LeakyReLU"));
        Assert.Same(LayerKind.TransformerBlock, LayerKind.ForModule("ModelDsl.TransformerBlock"));
        Assert.False(LayerKind.TryGet("Model", out _)); // a composed model has no attribute of its own
        // Every kind is registered under a distinct name, and the registry is what the diagnostics list.
        Assert.Equal(LayerKind.All.Count, LayerKind.All.Select(k => k.Name).Distinct().Count());
        Assert.Equal(LayerKind.All.Count, LayerKind.All.Select(k => k.ModuleType).Distinct().Count());
        // Every kind's field is in All (a field left out of All would compile and then be "not a layer").
        var fields = typeof(LayerKind).GetFields(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)
            .Where(f => f.FieldType == typeof(LayerKind)).Select(f => (LayerKind)f.GetValue(null)!).ToList();
        Assert.Equal(fields.Count, LayerKind.All.Count);
        Assert.All(fields, k => Assert.Contains(k, LayerKind.All));
        var run = Markup.Verify("[Model(Input = \"B, 4\")]\npublic partial class M\n{\n[RNN(16, 32)] public partial RNN {|MD0009:Rnn|} { get; }\n}");
        Assert.Contains("[LeakyReLU]", string.Join("\n", run.ModelDiagnostics.Select(d => d.GetMessage())));
    }
}
