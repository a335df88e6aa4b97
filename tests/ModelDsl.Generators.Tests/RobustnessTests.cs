namespace ModelDsl.Generators.Tests;

/// <summary>
/// The generator must never throw, whatever it is fed: broken or hostile declarations give diagnostics (the
/// compiler's or ours), never CS8785.
/// </summary>
public class RobustnessTests
{
    public static IEnumerable<object[]> HostileInputs() => new[]
    {
        // Syntax errors in and around the declaration.
        "[Model(Input = \"B, 4\"]\npublic partial class M { [Linear(2)] public partial Linear L { get; } }",
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Linear(2) public partial Linear L { get; } ",
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Linear(] public partial Linear L { get; } }",
        "[Model(Input = \"B, 4\")]\npublic partial class",
        "[Model(Input = )]\npublic partial class M { [Linear(2)] public partial Linear L { get; } }",
        "[Model(Input = null)]\npublic partial class M { [Linear(2)] public partial Linear L { get; } }",
        "[Model(Input = \"B, 4\", InputType = (DType)(-1))]\npublic partial class M { [Linear(2)] public partial Linear L { get; } }",
        "[Model]\npublic partial class M { [Linear(2)] public partial Linear L { get; } }",
        "[Model(Input = 42)]\npublic partial class M { }",
        // Missing, extra and mistyped arguments.
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Linear] public partial Linear L { get; } }",
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Linear(1, 2, 3)] public partial Linear L { get; } }",
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Linear(\"ten\")] public partial Linear L { get; } }",
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Conv2d(2, 3, Stride = -2147483648)] public partial Conv2d C { get; } }",
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Softmax(int.MinValue)] public partial Softmax S { get; } }",
        "[Model(Input = \"B, 2147483647, 2147483647\")]\npublic partial class M { [Flatten(StartDim = int.MinValue, EndDim = int.MaxValue)] public partial Flatten F { get; } }",
        "[Model(Input = \"B, 1, 2147483647, 2147483647\")]\npublic partial class M { [Conv2d(2147483647, 2147483647, Padding = 2147483647, Dilation = 2147483647)] public partial Conv2d C { get; } }",
        "[Model(Input = \"B, 1, 8, 8\")]\npublic partial class M { [MaxPool2d(2147483647, Padding = 2147483647)] public partial MaxPool2d P { get; } }",
        "[Model(Input = \"B, 8\")]\npublic partial class M { [Dropout(double.PositiveInfinity)] public partial Dropout D { get; } }",
        "[Model(Input = \"" + string.Join(", ", Enumerable.Repeat("2147483647", 64)) + "\")]\npublic partial class M { [Flatten(StartDim = 0)] public partial Flatten F { get; } }",
        "[Model(Input = \"B, \\u0000, 4\")]\npublic partial class M { [Linear(2)] public partial Linear L { get; } }",
        "[Model(Input = \"B, 4\\n\\\"*/ #error\")]\npublic partial class M { [Linear(2)] public partial Linear L { get; } }",
        // Unknown and misplaced types.
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Linear(2)] public partial NoSuchType L { get; } }",
        "[Model(Input = \"B, 4\")]\npublic partial class M { [NoSuchLayer(2)] public partial Linear L { get; } }",
        "[Model(Input = \"B, 4\")]\npublic partial struct S { [Linear(2)] public partial Linear L { get; } }",
        "[Model(Input = \"B, 4\")]\npublic partial interface I { }",
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Linear(2)] public partial Linear this[int i] { get; } }",
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Linear(2)] public partial Linear L { get; } [Linear(2)] public partial Linear L { get; } }",
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Linear(2)] public partial Linear L { get => null!; } }",
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Linear(2)] public partial Linear L { get; } public partial Linear L { get => null!; } }",
        // Generic, static, nested and self-referential shapes.
        "[Model(Input = \"B, 4\")]\npublic partial class M<T> where T : class { [Linear(2)] public partial Linear L { get; } }",
        "public partial class Outer<T> { [Model(Input = \"B, 4\")] public partial class M { [Linear(2)] public partial Linear L { get; } } }",
        "public partial class A { public partial class B { [Model(Input = \"B, 4\")] private partial class M { [Linear(2)] public partial Linear L { get; } } } }",
        "[Model(Input = \"B, 4\")]\npublic partial class M { public partial M Self { get; } }",
        "[Model(Input = \"B, 4\")]\npublic partial class M { public partial N Next { get; } }\n[Model(Input = \"B, 4\")]\npublic partial class N { public partial M Back { get; } }",
        "[Model(Input = \"B, 4\")]\npublic partial class M : M { [Linear(2)] public partial Linear L { get; } }",
        "[Model(Input = \"B, 4\")]\npublic partial class M : TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor> { [Linear(2)] public partial Linear L { get; } }",
        "[Model(Input = \"B, 4\")]\n[Model(Input = \"B, 4\")]\npublic partial class M { [Linear(2)] public partial Linear L { get; } }",
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Linear(2)] public static Linear L = null!; [Linear(2)] public const string C = \"\"; }",
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Linear(2)] public event System.Action? E; [Linear(2)] public void F() { } }",
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Linear(2)] public partial Linear L { get; } public partial class M { } }",
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Linear(2)] public partial Linear L { get; } public M(int x) : base(\"x\") { } }",
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Linear(2)] public partial Linear L { get; } public TorchSharp.torch.Tensor forward() => null!; }",
        "[Model(Input = \"B, 4\")]\npublic partial class M { [Linear(2)] public partial Linear L { get; } public static TorchSharp.torch.Tensor forward(TorchSharp.torch.Tensor x) => x; }",
    }.Select(s => new object[] { s });

    [Theory]
    [MemberData(nameof(HostileInputs))]
    public void HostileDeclaration_ProducesDiagnostics_NeverACrash(string source)
    {
        var run = GeneratorHarness.Run(GeneratorHarness.Usings + source);
        run.AssertNoGeneratorCrash();
    }

    [Fact]
    public void PartialClassAcrossFiles_WithAttributeOnSecondPart_Works()
    {
        var first = GeneratorHarness.Usings + "namespace N; public partial class M { public int Other => 1; }";
        var second = GeneratorHarness.Usings + "namespace N; [Model(Input = \"B, 4\")] public partial class M { [Linear(2)] public partial Linear L { get; } }";
        var run = GeneratorHarness.Run(GeneratorHarness.Compile(new[] { ("A.cs", first), ("B.cs", second) }));
        run.AssertNoGeneratorCrash();
        Assert.Empty(run.ModelDiagnostics);
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
    }

    [Fact]
    public void ModelWithErrors_StillYieldsOnlyOurDiagnostic_NotUnimplementedPartialNoise()
    {
        var run = Markup.Verify("""
            [Model(Input = "B, 64")]
            public partial class M
            {
                [Linear({|MD0101:32|}, 10)] public partial Linear L { get; }
            }
            """);
        // The skeleton implements the partial property, so the user sees MD0101 and not CS9248.
        Assert.DoesNotContain(run.CompilerDiagnostics, d => d.Id == "CS9248");
        Assert.Contains("throw new global::System.InvalidOperationException", run.Source("M.Model.g.cs"));
    }
}
