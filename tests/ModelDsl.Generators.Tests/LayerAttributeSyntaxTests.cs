using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using ModelDsl.Generators.Parsing;
using ModelDsl.Shapes;

namespace ModelDsl.Generators.Tests;

/// <summary>
/// Layer attributes read from syntax (<see cref="LayerAttributeSyntax"/>) give what binding gives, and fall back to
/// binding where the syntax does not settle them (constants from elsewhere, a name that means the user's own type).
/// </summary>
public class LayerAttributeSyntaxTests
{
    private const string Literals = """
        namespace Lit;

        [Model(Input = "B, 1, 8, 8")]
        public partial class Net
        {
            [Conv2d(1, 8, new[] { 3, 5 }, Stride = 1, Padding = 2, Bias = false)] public partial Conv2d Conv { get; }
            [MaxPool2d(2, Stride = 2)]        public partial MaxPool2d Pool { get; }
            [LeakyReLU(-0.5)]                 public partial LeakyReLU Act { get; }
            [Flatten]                         public partial Flatten Flat { get; }
            [Dropout(0.25)]                   public partial Dropout Drop { get; }
            [Linear(160, 48)]                 public partial Linear Hidden { get; }
            [Linear(48, 48)]                  public partial Linear Mid { get; }
            [Linear(10, Bias = true)]         public partial Linear Out { get; }
            [BatchNorm1d(Eps = 1)]            public partial BatchNorm1d Norm { get; }
            [Softmax(-1)]                     public partial Softmax Probs { get; }
        }
        """;

    private const string Constants = """
        namespace Lit;

        public static class Sizes
        {
            public const int One = 1, Eight = 8, Three = 3, Five = 5, Two = 2, Flat = 160, Hidden = 48;
            public const double Slope = -0.5, P = 0.25;
            public const bool NoBias = false, Yes = true;
            public const int Ten = 10, MinusOne = -1;
        }

        [Model(Input = "B, 1, 8, 8")]
        public partial class Net
        {
            [Conv2d(Sizes.One, Sizes.Eight, new[] { Sizes.Three, Sizes.Five }, Stride = Sizes.One, Padding = Sizes.Two, Bias = Sizes.NoBias)] public partial Conv2d Conv { get; }
            [MaxPool2d(Sizes.Two, Stride = Sizes.Two)] public partial MaxPool2d Pool { get; }
            [LeakyReLU(Sizes.Slope)]          public partial LeakyReLU Act { get; }
            [Flatten]                         public partial Flatten Flat { get; }
            [Dropout(Sizes.P)]                public partial Dropout Drop { get; }
            [Linear(Sizes.Flat, Sizes.Hidden)] public partial Linear Hidden { get; }
            [Linear(Sizes.Hidden, Sizes.Hidden)] public partial Linear Mid { get; }
            [Linear(Sizes.Ten, Bias = Sizes.Yes)] public partial Linear Out { get; }
            [BatchNorm1d(Eps = Sizes.One)]    public partial BatchNorm1d Norm { get; }
            [Softmax(Sizes.MinusOne)]         public partial Softmax Probs { get; }
        }
        """;

    /// <summary>The member's layer attributes read from its one declaration's syntax, as the parser reads them.</summary>
    private static LayerAttributeSyntax.Layer? Read(ISymbol member, Compilation compilation)
    {
        var node = member.DeclaringSyntaxReferences.Single().GetSyntax();
        var lists = node is PropertyDeclarationSyntax property ? property.AttributeLists
            : ((FieldDeclarationSyntax)node.Parent!.Parent!).AttributeLists;
        return LayerAttributeSyntax.TryRead(lists, member.ContainingType, compilation, default);
    }

    private static readonly (string Constant, string Literal)[] Replacements =
    {
        ("new[] { Sizes.Three, Sizes.Five }", "new[] { 3, 5 }"), ("Sizes.NoBias", "false"), ("Sizes.Yes", "true"), ("Sizes.Ten", "10"), ("Sizes.Flat", "160"),
        ("Sizes.MinusOne", "-1"), ("Sizes.Slope", "-0.5"), ("Sizes.P", "0.25"), ("Sizes.Hidden", "48"), ("Sizes.Eight", "8"), ("Sizes.One", "1"), ("Sizes.Two", "2"),
    };

    [Fact]
    public void SyntaxPath_ReadsLiterals_AsBindingDoes()
    {
        var compilation = GeneratorHarness.Compile(GeneratorHarness.Usings + Literals);
        var type = compilation.GetTypeByMetadataName("Lit.Net")!;
        int read = 0;
        foreach (var member in type.GetMembers().OfType<IPropertySymbol>())
        {
            var fromSyntax = Read(member, compilation);
            Assert.True(fromSyntax is { Count: 1, Reader: not null }, member.Name + " was not read from syntax");
            var bound = member.GetAttributes().Single();
            Assert.True(SymbolEqualityComparer.Default.Equals(bound.AttributeClass, fromSyntax!.AttributeClass), member.Name);
            string kindName = bound.AttributeClass!.Name.Replace("Attribute", "");
            Assert.True(LayerKind.TryGet(kindName, out var kind));
            var expected = LayerAttributeReader.For(bound).ReadParams(kind);
            var actual = fromSyntax.Reader!.ReadParams(kind);
            Assert.Equal((expected.In, expected.Out, expected.Count, expected.Bias), (actual.In, actual.Out, actual.Count, actual.Bias));
            Assert.Equal(expected.Own, actual.Own);
            Assert.Equal(LayerAttributeReader.For(bound).TiedTo, fromSyntax.Reader.TiedTo);
            read++;
        }
        Assert.Equal(10, read);
    }

    [Fact]
    public void ConstantsFromAnotherClass_AreBound()
    {
        var compilation = GeneratorHarness.Compile(GeneratorHarness.Usings + Constants);
        var type = compilation.GetTypeByMetadataName("Lit.Net")!;
        Assert.Null(Read(type.GetMembers("Hidden").Single(), compilation));
        Assert.Null(Read(type.GetMembers("Drop").Single(), compilation));
        // [Flatten] has no arguments: syntax settles it even here.
        Assert.NotNull(Read(type.GetMembers("Flat").Single(), compilation));
    }

    [Fact]
    public void LiteralsAndConstants_GiveTheSameGeneratedCode()
    {
        var literal = GeneratorHarness.Run(GeneratorHarness.Usings + Literals);
        var constant = GeneratorHarness.Run(GeneratorHarness.Usings + Constants);
        Assert.Empty(literal.GeneratorDiagnostics);
        Assert.Empty(constant.GeneratorDiagnostics);
        var literalSources = Sources(literal);
        var constantSources = Sources(constant);
        Assert.NotEmpty(literalSources);
        Assert.Equal(literalSources.Count, constantSources.Count);
        for (int i = 0; i < literalSources.Count; i++)
        {
            // The generated comments quote the attribute as written.
            string text = constantSources[i];
            foreach (var (c, l) in Replacements) text = text.Replace(c, l);
            Assert.Equal(literalSources[i], text);
        }
    }

    [Theory]
    [InlineData("[Linear(100, 10)]", "[Linear(Sizes.Wrong, 10)]", "100", "Sizes.Wrong")]
    [InlineData("[Conv2d(4, 3, Stride = 0)]", "[Conv2d(4, 3, Stride = Sizes.Zero)]", "Stride = 0", "Stride = Sizes.Zero")]
    [InlineData("[Dropout(1.5)]", "[Dropout(Sizes.TooMuch)]", "1.5", "Sizes.TooMuch")]
    [InlineData("[Linear(64, 10, TiedTo = nameof(Hidden))]", "[Linear(64, 10, TiedTo = Sizes.Tied)]", "TiedTo = nameof(Hidden)", "TiedTo = Sizes.Tied")]
    public void LiteralsAndConstants_GiveTheSameDiagnostics(string literalAttribute, string constantAttribute, string literalArgument, string constantArgument)
    {
        string Model(string attribute) => GeneratorHarness.Usings + $$"""
            namespace Diag;

            public static class Sizes { public const int Wrong = 100, Zero = 0; public const double TooMuch = 1.5; public const string Tied = "Hidden"; }

            [Model(Input = "B, 1, 8, 8")]
            public partial class Net
            {
                [Conv2d(4, 3)] public partial Conv2d First { get; }
                [Flatten]      public partial Flatten Flat { get; }
                {{(attribute.StartsWith("[Conv2d") ? "" : "[Linear(144, 64)] public partial Linear Hidden { get; }")}}
                {{attribute}} public partial {{attribute.Substring(1, attribute.IndexOf('(') - 1)}} Layer { get; }
            }
            """;
        var literal = GeneratorHarness.Run(Model(literalAttribute)).GeneratorDiagnostics;
        var constant = GeneratorHarness.Run(Model(constantAttribute)).GeneratorDiagnostics;
        Assert.NotEmpty(literal);
        Assert.Equal(literal.Select(d => (d.Id, d.GetMessage())), constant.Select(d => (d.Id, d.GetMessage())));
        Assert.Equal(literalArgument, Text(literal[0]));
        Assert.Equal(constantArgument, Text(constant[0]));
    }

    [Fact]
    public void LayerName_BoundToTheUsersOwnType_IsNotMisread()
    {
        // In namespace Mine, [Linear] means Mine.LinearAttribute (the namespace's own type wins over a using); in
        // Theirs, and in the same compilation, ModelDsl's. Nested in a model, the class's own type wins.
        const string mine = """
            namespace Mine
            {
                public sealed class LinearAttribute : System.Attribute { public LinearAttribute(int inFeatures, int outFeatures) { } }

                [Model(Input = "B, 4")]
                public partial class Net
                {
                    [Linear(4, 8)] public partial Linear Hidden { get; }
                }
            }

            namespace Nested
            {
                [Model(Input = "B, 4")]
                public partial class Net
                {
                    public sealed class LinearAttribute : System.Attribute { public LinearAttribute(int inFeatures, int outFeatures) { } }

                    [Linear(4, 8)] public partial Linear Hidden { get; }
                }
            }
            """;
        const string theirs = """
            namespace Theirs;

            [Model(Input = "B, 4")]
            public partial class Net
            {
                [Linear(4, 8)] public partial Linear Hidden { get; }
            }
            """;
        var compilation = GeneratorHarness.Compile(new[] { ("Mine.cs", GeneratorHarness.Usings + mine), ("Theirs.cs", GeneratorHarness.Usings + theirs) });
        var diagnostics = GeneratorHarness.Run(compilation).GeneratorDiagnostics;
        var md0009 = diagnostics.Where(d => d.Id == "MD0009").ToArray();
        Assert.Equal(2, md0009.Length);
        Assert.All(md0009, d => Assert.Contains("'Hidden' of model 'Net' is not a layer: it has no layer attribute", d.GetMessage()));
        Assert.Equal(new[] { "Mine.cs", "Mine.cs" }, md0009.Select(d => d.Location.SourceTree!.FilePath));
        Assert.DoesNotContain(diagnostics, d => d.Location.SourceTree?.FilePath == "Theirs.cs");

        var theirsNet = compilation.GetTypeByMetadataName("Theirs.Net")!;
        var read = Read(theirsNet.GetMembers("Hidden").Single(), compilation);
        Assert.Equal("ModelDsl.LinearAttribute", read?.AttributeClass?.ToDisplayString());
        foreach (var name in new[] { "Mine.Net", "Nested.Net" })
        {
            var net = compilation.GetTypeByMetadataName(name)!;
            Assert.Equal(0, Read(net.GetMembers("Hidden").Single(), compilation)?.Count);
        }
    }

    [Fact]
    public void LayerName_ResolvedOnceForTheProject_IsNotReusedWhereANamespaceChangesIt()
    {
        // An attribute name is bound once for every namespace of the project where no namespace on the path declares
        // it and no namespace declaration has usings of its own. Here Theirs.Inner binds [Linear] first (ModelDsl's);
        // Outer.Inner's parent namespace declares LinearAttribute, and Aliased has an alias of its own: both must
        // bind it again and get Outer.LinearAttribute, not a layer.
        const string theirs = """
            namespace Theirs.Inner;

            [Model(Input = "B, 4")]
            public partial class Net
            {
                [Linear(4, 8)] public partial Linear Hidden { get; }
            }

            [Model(Input = "B, 4")]
            public partial class Verbatim
            {
                [@LinearAttribute(4, 8)] public partial Linear Hidden { get; }
            }
            """;
        const string outer = """
            namespace Outer
            {
                public sealed class LinearAttribute : System.Attribute { public LinearAttribute(int inFeatures, int outFeatures) { } }
            }

            namespace Outer.Inner
            {
                [Model(Input = "B, 4")]
                public partial class Net
                {
                    [Linear(4, 8)] public partial Linear Hidden { get; }
                }
            }

            namespace Outer.Escaped
            {
                [Model(Input = "B, 4")]
                public partial class Net
                {
                    [@LinearAttribute(4, 8)] public partial Linear Hidden { get; }
                }
            }

            namespace Aliased
            {
                using LinearAttribute = Outer.LinearAttribute;

                [Model(Input = "B, 4")]
                public partial class Net
                {
                    [Linear(4, 8)] public partial Linear Hidden { get; }
                }
            }
            """;
        var compilation = GeneratorHarness.Compile(new[] { ("Theirs.cs", GeneratorHarness.Usings + theirs), ("Outer.cs", GeneratorHarness.Usings + outer) });
        var read = Read(compilation.GetTypeByMetadataName("Theirs.Inner.Net")!.GetMembers("Hidden").Single(), compilation);
        Assert.Equal("ModelDsl.LinearAttribute", read?.AttributeClass?.ToDisplayString());
        // A verbatim name ('@LinearAttribute') is the same name to the namespaces: Outer.Escaped must not reuse Theirs'.
        var verbatim = Read(compilation.GetTypeByMetadataName("Theirs.Inner.Verbatim")!.GetMembers("Hidden").Single(), compilation);
        Assert.Equal("ModelDsl.LinearAttribute", verbatim?.AttributeClass?.ToDisplayString());
        foreach (var name in new[] { "Outer.Inner.Net", "Outer.Escaped.Net", "Aliased.Net" })
        {
            var net = compilation.GetTypeByMetadataName(name)!;
            Assert.Equal(0, Read(net.GetMembers("Hidden").Single(), compilation)?.Count);
        }

        // The generator agrees: the two are not layers (MD0009 in Outer.cs), Theirs.Inner.Net is a model.
        var diagnostics = GeneratorHarness.Run(compilation).GeneratorDiagnostics;
        var md0009 = diagnostics.Where(d => d.Id == "MD0009").ToArray();
        Assert.Equal(new[] { "Outer.cs", "Outer.cs", "Outer.cs" }, md0009.Select(d => d.Location.SourceTree!.FilePath));
        Assert.DoesNotContain(diagnostics, d => d.Location.SourceTree?.FilePath == "Theirs.cs");
    }

    private static List<string> Sources(GeneratorRun run) =>
        run.Driver.GetRunResult().GeneratedTrees.OrderBy(t => t.FilePath, StringComparer.Ordinal).Select(t => t.GetText().ToString()).ToList();

    private static string Text(Diagnostic d) => d.Location.SourceTree!.GetText().ToString(d.Location.SourceSpan);
}
