using Microsoft.CodeAnalysis;
using ModelDsl.Generators.Parsing;

namespace ModelDsl.Generators.Tests;

/// <summary>
/// A model's fields and properties read from syntax (<see cref="LayerMember"/>) are what the member symbols say, in the
/// same order; what the syntax does not settle alone falls back to the symbols; a type name means what the compiler
/// makes of it in each scope, though it is bound once per name and scope.
/// </summary>
public class LayerMemberTests
{
    private const string Shapes = """
        namespace Shapes;

        public interface IHolder { Linear Held { get; } }

        [Model(Input = "B, 4")]
        public partial class Net
        {
            [Linear(8)] public partial Linear Hidden { get; }
            [ReLU] partial ReLU Act { get; }
            [Linear(8)] internal Linear Field, Second;
            protected internal Linear? Nullable;
            private protected static Linear Shared = null!;
            const int Width = 8;
            [Dropout(0.5)] protected virtual Dropout Drop { get; set; } = null!;
            public Linear Init { get; init; } = null!;
            public Linear Computed => Init;
            public abstract Linear Abstract { get; }
            public void Helper() { }
            public event System.EventHandler? Changed;
            public class Nested { }
            public Net(int x) : this() { }
            [Linear(2)] public partial Linear Output { get; }
        }
        """;

    [Fact]
    public void FromSyntax_IsWhatTheSymbolsSay_InTheirOrder()
    {
        var compilation = GeneratorHarness.Compile(GeneratorHarness.Usings + Shapes.Replace("protected internal Linear? Nullable;", ""));
        var type = compilation.GetTypeByMetadataName("Shapes.Net")!;
        var fromSyntax = LayerMember.FromSyntax(type, compilation, default);
        Assert.NotNull(fromSyntax);
        var fromSymbols = LayerMember.FromSymbols(type, default);
        Assert.Equal(fromSymbols.Select(m => m.Name), fromSyntax!.Select(m => m.Name));
        Assert.Equal(new[] { "Hidden", "Act", "Field", "Second", "Shared", "Width", "Drop", "Init", "Computed", "Abstract", "Output" }, fromSyntax.Select(m => m.Name));
        foreach (var (syntax, symbol) in fromSyntax.Zip(fromSymbols))
        {
            Assert.True(SymbolEqualityComparer.Default.Equals(symbol.Type, syntax.Type), syntax.Name);
            Assert.Equal(TypeNames.FullyQualified(symbol.Type), TypeNames.FullyQualified(syntax.Type));
            Assert.Equal(symbol.Type.ToDisplayString(), syntax.Type.ToDisplayString());
            Assert.Equal((symbol.IsField, symbol.IsStatic, symbol.IsIndexer, symbol.HasSetter, symbol.IsOverridable, symbol.DeclaredAccessibility),
                (syntax.IsField, syntax.IsStatic, syntax.IsIndexer, syntax.HasSetter, syntax.IsOverridable, syntax.DeclaredAccessibility));
            Assert.Equal(symbol.Location, syntax.Location);
            Assert.Equal(symbol.PropertySyntax, syntax.PropertySyntax);
            Assert.Equal(symbol.AttributeLists?.Count, syntax.AttributeLists?.Count);
            Assert.True(SymbolEqualityComparer.Default.Equals(symbol.Symbol, syntax.Symbol), syntax.Name);
        }
    }

    [Theory]
    [InlineData("protected internal Linear? Nullable;", "a nullable type")]
    [InlineData("public Linear this[int i] => Init;", "an indexer")]
    [InlineData("Linear IHolder.Held => Init;", "an explicit interface implementation")]
    [InlineData("public partial Linear Hidden { get => null!; }", "a partial property's second part")]
    [InlineData("public Linear[] Many = null!;", "an array type")]
    [InlineData("public Lineaar Typo = null!;", "a type name that does not resolve")]
    public void WhatSyntaxDoesNotSettle_FallsBackToTheSymbols(string member, string what)
    {
        var source = Shapes.Replace("protected internal Linear? Nullable;", member);
        var compilation = GeneratorHarness.Compile(GeneratorHarness.Usings + source);
        var type = compilation.GetTypeByMetadataName("Shapes.Net")!;
        Assert.True(LayerMember.FromSyntax(type, compilation, default) is null, what);
        // The parser then reads the symbols (and still reports what is wrong with the member).
        Assert.NotEmpty(LayerMember.Of(type, compilation, default));
    }

    [Fact]
    public void AClassInSeveralDeclarations_FallsBackToTheSymbols()
    {
        var compilation = GeneratorHarness.Compile(GeneratorHarness.Usings + """
            namespace Parts;
            [Model(Input = "B, 4")]
            public partial class Net { [Linear(8)] public partial Linear Hidden { get; } }
            public partial class Net { [Linear(2)] public partial Linear Output { get; } }
            """);
        var type = compilation.GetTypeByMetadataName("Parts.Net")!;
        Assert.Null(LayerMember.FromSyntax(type, compilation, default));
        Assert.Equal(new[] { "Hidden", "Output" }, LayerMember.Of(type, compilation, default).Select(m => m.Name));
    }

    [Fact]
    public void ATypeName_MeansWhatItMeansInItsScope()
    {
        // The same text, 'Linear', in three scopes: TorchSharp's through the using, the namespace's own class (which
        // a namespace member wins over a using), and an alias.
        var compilation = GeneratorHarness.Compile(
            GeneratorHarness.Usings + """
            namespace Plain
            {
                [Model(Input = "B, 4")] public partial class A { [Linear(2)] public partial Linear Hidden { get; } }
                [Model(Input = "B, 4")] public partial class B { [Linear(2)] public partial Linear Hidden { get; } }
            }
            namespace Own
            {
                public class Linear { }
                [Model(Input = "B, 4")] public partial class C { [Linear(2)] public partial Linear Hidden { get; } }
            }
            """,
            "using ModelDsl;\nusing Linear = TorchSharp.Modules.Dropout;\nnamespace Plain { [Model(Input = \"B, 4\")] public partial class D { [Linear(2)] public partial Linear Hidden { get; } } }\n");
        string TypeOf(string model)
        {
            var type = compilation.GetTypeByMetadataName(model)!;
            var member = Assert.Single(LayerMember.FromSyntax(type, compilation, default)!);
            Assert.True(SymbolEqualityComparer.Default.Equals(((IPropertySymbol)type.GetMembers("Hidden").Single()).Type, member.Type), model);
            return member.Type.ToDisplayString();
        }
        Assert.Equal("TorchSharp.Modules.Linear", TypeOf("Plain.A"));
        Assert.Equal("TorchSharp.Modules.Linear", TypeOf("Plain.B"));
        Assert.Equal("Own.Linear", TypeOf("Own.C"));
        Assert.Equal("TorchSharp.Modules.Dropout", TypeOf("Plain.D"));
    }

    [Theory]
    [InlineData("public override Tensor forward(Tensor x) => x;", 1)]
    [InlineData("public Tensor forward(Tensor a, Tensor b) => a;", 2)]
    [InlineData("public static Tensor forward(Tensor x) => x;", 0)]
    [InlineData("public Tensor Forward(Tensor x) => x;", 0)]
    [InlineData("partial void forward(Tensor x);", 1)]
    public void Forwards_AreWhatTheSymbolsSay(string method, int forwards)
    {
        var compilation = GeneratorHarness.Compile(GeneratorHarness.Usings + "using static TorchSharp.torch;\nnamespace F;\n[Model(Input = \"B, 4\")]\npublic partial class Net\n{\n    [Linear(2)] public partial Linear Output { get; }\n    " + method + "\n}\n");
        var type = compilation.GetTypeByMetadataName("F.Net")!;
        var read = LayerMember.Forwards(type, default);
        var symbols = type.GetMembers("forward").OfType<IMethodSymbol>().Where(m => !m.IsStatic).ToArray();
        Assert.Equal(symbols.Select(m => (m.Parameters.Length, m.Locations.First())), read.Select(f => (f.Parameters, f.Location!)));
        Assert.Equal(forwards == 0 ? 0 : 1, read.Count);
        if (forwards > 0) Assert.Equal(forwards, read[0].Parameters);
    }
}
