using System.Collections;
using System.Reflection;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace ModelDsl.Generators.Tests;

/// <summary>The pipeline caches: unchanged models are not re-emitted, and the model holds no compiler objects.</summary>
public class IncrementalTests
{
    private static readonly string Mlp = GeneratorHarness.Usings + SnapshotTests.DigitsMlp;
    private static readonly string Cnn = GeneratorHarness.Usings + SnapshotTests.DigitsCnn;

    private static CSharpCompilation TwoModels() =>
        GeneratorHarness.Compile(new[] { ("Mlp.cs", Mlp), ("Cnn.cs", Cnn) });

    [Fact]
    public void SecondRun_OnTheSameCompilation_IsCached()
    {
        var compilation = TwoModels();
        var driver = GeneratorHarness.CreateDriver().RunGenerators(compilation);
        driver = driver.RunGenerators(compilation);

        var result = driver.GetRunResult().Results.Single();
        foreach (var step in new[] { TrackingNames.Parse, TrackingNames.Models, TrackingNames.Diagnostics })
            Assert.All(result.TrackedSteps[step].SelectMany(s => s.Outputs), o => Assert.Equal(IncrementalStepRunReason.Cached, o.Reason));
        Assert.All(result.TrackedOutputSteps.SelectMany(s => s.Value).SelectMany(s => s.Outputs),
            o => Assert.Equal(IncrementalStepRunReason.Cached, o.Reason));
    }

    [Fact]
    public void UnrelatedEdit_LeavesModelOutputsUnchanged()
    {
        var compilation = TwoModels();
        var driver = GeneratorHarness.CreateDriver().RunGenerators(compilation);

        var edited = compilation.AddSyntaxTrees(CSharpSyntaxTree.ParseText(
            "namespace Other; public class Unrelated { public int X => 42; }", GeneratorHarness.ParseOptions, "Other.cs"));
        driver = driver.RunGenerators(edited);

        var result = driver.GetRunResult().Results.Single();
        foreach (var step in new[] { TrackingNames.Parse, TrackingNames.Models, TrackingNames.Diagnostics, TrackingNames.RuntimeReferenced })
            Assert.All(result.TrackedSteps[step].SelectMany(s => s.Outputs),
                o => Assert.True(o.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, step + ": " + o.Reason));
        // The source outputs are fed by the Models step and the one-bool runtime fact, so they were not re-emitted:
        // each model's module and its Load/Predict file.
        Assert.Equal(4, result.GeneratedSources.Length);
    }

    [Fact]
    public void EditInsideOneModelsFile_ThatDoesNotChangeIt_IsUnchanged()
    {
        var compilation = TwoModels();
        var driver = GeneratorHarness.CreateDriver().RunGenerators(compilation);

        // A comment and a blank line change the tree (and every location) but not the model.
        var oldTree = compilation.SyntaxTrees.Single(t => t.FilePath == "Mlp.cs");
        var newTree = CSharpSyntaxTree.ParseText("// a comment\n\n" + Mlp, GeneratorHarness.ParseOptions, "Mlp.cs");
        driver = driver.RunGenerators(compilation.ReplaceSyntaxTree(oldTree, newTree));

        var models = driver.GetRunResult().Results.Single().TrackedSteps[TrackingNames.Models].SelectMany(s => s.Outputs).ToArray();
        Assert.Equal(2, models.Length);
        Assert.All(models, o => Assert.True(o.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, o.Reason.ToString()));
    }

    [Fact]
    public void EditingOneModel_ModifiesOnlyThatModel()
    {
        var compilation = TwoModels();
        var driver = GeneratorHarness.CreateDriver().RunGenerators(compilation);

        var oldTree = compilation.SyntaxTrees.Single(t => t.FilePath == "Mlp.cs");
        var newTree = CSharpSyntaxTree.ParseText(Mlp.Replace("[Linear(10)]", "[Linear(12)]"), GeneratorHarness.ParseOptions, "Mlp.cs");
        driver = driver.RunGenerators(compilation.ReplaceSyntaxTree(oldTree, newTree));

        var result = driver.GetRunResult();
        var reasons = result.Results.Single().TrackedSteps[TrackingNames.Models].SelectMany(s => s.Outputs).Select(o => o.Reason).ToArray();
        Assert.Equal(1, reasons.Count(r => r == IncrementalStepRunReason.Modified));
        Assert.Equal(1, reasons.Count(r => r is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged));
        Assert.Contains("global::TorchSharp.torch.nn.Linear(128, 12, hasBias: true)",
            result.GeneratedTrees.Single(t => t.FilePath.EndsWith("DigitsMlp.Model.g.cs", StringComparison.Ordinal)).ToString());
    }

    private static (GeneratorDriver Driver, CSharpCompilation Compilation) RunThenEditMethodBody(CSharpCompilation compilation, string path, string before, string after)
    {
        var driver = GeneratorHarness.CreateDriver().RunGenerators(compilation);
        var oldTree = compilation.SyntaxTrees.Single(t => t.FilePath == path);
        var newTree = CSharpSyntaxTree.ParseText(oldTree.ToString().Replace(before, after), GeneratorHarness.ParseOptions, path);
        Assert.NotEqual(oldTree.ToString(), newTree.ToString());
        var edited = compilation.ReplaceSyntaxTree(oldTree, newTree);
        return (driver.RunGenerators(edited), edited);
    }

    private static IncrementalStepRunReason[] Reasons(GeneratorDriver driver, string step) =>
        driver.GetRunResult().Results.Single().TrackedSteps[step].SelectMany(s => s.Outputs).Select(o => o.Reason).ToArray();

    private const string Unrelated = "namespace Other; public class Unrelated { public int Answer() { return 42; } }";

    [Fact]
    public void UnrelatedEdit_DoesNotParseTheModelsAgain()
    {
        // A keystroke in another file's method body: the models' syntax stage re-runs (Roslyn re-runs every
        // ForAttributeWithMetadataName transform on a new compilation) and finds nothing changed, so the parse
        // step, which binds the layer attributes, does not run at all (Cached, not Unchanged: not re-run then equal).
        var compilation = GeneratorHarness.Compile(new[] { ("Mlp.cs", Mlp), ("Cnn.cs", Cnn), ("Other.cs", Unrelated) });
        var (driver, _) = RunThenEditMethodBody(compilation, "Other.cs", "return 42;", "return 43;");

        var sources = Reasons(driver, TrackingNames.Sources);
        Assert.Equal(2, sources.Length);
        Assert.All(sources, r => Assert.Equal(IncrementalStepRunReason.Unchanged, r));
        var parses = Reasons(driver, TrackingNames.Parse);
        Assert.Equal(2, parses.Length);
        Assert.All(parses, r => Assert.Equal(IncrementalStepRunReason.Cached, r));
    }

    [Fact]
    public void EditToAConstantInAnotherFile_ParsesTheModelThatUsesItAgain()
    {
        // The model names a type of this compilation's sources, so its parse depends on another file: it runs on
        // every compilation and sees the new value; the model beside it that names none stays cached.
        const string constants = "namespace Samples.Digits; public static class Sizes { public const int Hidden = 64; }";
        string usesConstant = Mlp.Replace("[Linear(128)]", "[Linear(Sizes.Hidden)]");
        var compilation = GeneratorHarness.Compile(new[] { ("Mlp.cs", usesConstant), ("Cnn.cs", Cnn), ("Sizes.cs", constants) });
        var (driver, _) = RunThenEditMethodBody(compilation, "Sizes.cs", "Hidden = 64", "Hidden = 32");

        var result = driver.GetRunResult();
        Assert.Contains("global::TorchSharp.torch.nn.Linear(64, 32, hasBias: true)",
            result.GeneratedTrees.Single(t => t.FilePath.EndsWith("DigitsMlp.Model.g.cs", StringComparison.Ordinal)).ToString());
        var parses = Reasons(driver, TrackingNames.Parse);
        Assert.Equal(1, parses.Count(r => r == IncrementalStepRunReason.Modified));
        Assert.Equal(1, parses.Count(r => r == IncrementalStepRunReason.Cached));
    }

    [Fact]
    public void TypeAddedElsewhereThatAModelNames_ParsesItAgain()
    {
        // A class named like the model's property type, added in the model's namespace in another file, changes
        // what 'Linear' means there (MD0006, the type does not match the attribute): the model must not stay cached.
        var compilation = GeneratorHarness.Compile(new[] { ("Mlp.cs", Mlp), ("Other.cs", Unrelated) });
        var (driver, edited) = RunThenEditMethodBody(compilation, "Other.cs", "namespace Other; public class Unrelated",
            "namespace Samples.Digits; public class Linear : TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor> { public Linear() : base(\"L\") { } public override TorchSharp.torch.Tensor forward(TorchSharp.torch.Tensor x) => x; } public class Unrelated");

        var fresh = GeneratorHarness.CreateDriver().RunGenerators(edited).GetRunResult();
        var incremental = driver.GetRunResult();
        Assert.NotEmpty(fresh.Diagnostics);
        Assert.Equal(fresh.Diagnostics.Select(d => d.ToString()), incremental.Diagnostics.Select(d => d.ToString()));
        Assert.Equal(IncrementalStepRunReason.Modified, Assert.Single(Reasons(driver, TrackingNames.Parse)));
    }

    [Fact]
    public void EditToAComposedModelOfTheSameNameInAnotherNamespace_ParsesTheComposingModelAgain()
    {
        // A.Encoder composes B.Encoder: its own name, used as a type, names the other model. An edit to B.Encoder's
        // layers in its own file must reach A.Encoder's shapes and parameter count.
        const string outer = GeneratorHarness.Usings + """
            namespace A;
            [Model(Input = "B, 8")]
            public partial class Encoder
            {
                public partial B.Encoder Inner { get; }
                [Linear(2)] public partial Linear Out { get; }
            }
            """;
        const string inner = GeneratorHarness.Usings + """
            namespace B;
            [Model(Input = "B, 8")]
            public partial class Encoder
            {
                [Linear(4)] public partial Linear Hidden { get; }
            }
            """;
        var compilation = GeneratorHarness.Compile(new[] { ("Outer.cs", outer), ("Inner.cs", inner) });
        var (driver, edited) = RunThenEditMethodBody(compilation, "Inner.cs", "[Linear(4)]", "[Linear(6)]");

        var fresh = GeneratorHarness.CreateDriver().RunGenerators(edited).GetRunResult();
        var incremental = driver.GetRunResult();
        Assert.Equal(GeneratedTexts(fresh), GeneratedTexts(incremental));
        Assert.Contains(GeneratedTexts(incremental), t => t.Contains("(6L, 2L)", StringComparison.Ordinal) || t.Contains("Linear(6, 2", StringComparison.Ordinal));
    }

    [Fact]
    public void DefineChangedInTheModelsFile_ParsesItAgain()
    {
        // The same text, the same length, another live #if branch: the model gains a layer.
        string model = "#define CPU\n" + GeneratorHarness.Usings + """
            namespace Samples.Pre;
            [Model(Input = "B, 8")]
            public partial class Switch
            {
                [Linear(4)] public partial Linear Hidden { get; }
            #if GPU
                [ReLU] public partial ReLU Act { get; }
            #endif
            }
            """;
        var compilation = GeneratorHarness.Compile(new[] { ("Switch.cs", model) });
        var (driver, edited) = RunThenEditMethodBody(compilation, "Switch.cs", "#define CPU", "#define GPU");

        var fresh = GeneratorHarness.CreateDriver().RunGenerators(edited).GetRunResult();
        var incremental = driver.GetRunResult();
        Assert.Equal(GeneratedTexts(fresh), GeneratedTexts(incremental));
        Assert.Contains(GeneratedTexts(incremental), t => t.Contains("Act", StringComparison.Ordinal));
    }

    private static string[] GeneratedTexts(GeneratorDriverRunResult run) =>
        run.Results.SelectMany(r => r.GeneratedSources).Select(g => g.SourceText.ToString()).OrderBy(t => t, StringComparer.Ordinal).ToArray();

    [Fact]
    public void GlobalUsingAddedElsewhere_ParsesTheModelsAgain()
    {
        var compilation = GeneratorHarness.Compile(new[] { ("Mlp.cs", Mlp), ("Other.cs", Unrelated) });
        var (driver, _) = RunThenEditMethodBody(compilation, "Other.cs", "namespace Other;", "global using System.Linq; namespace Other;");
        Assert.Equal(IncrementalStepRunReason.Unchanged, Assert.Single(Reasons(driver, TrackingNames.Parse)));
    }

    [Fact]
    public void PipelineModel_HoldsNoSymbolsSyntaxOrCompilation()
    {
        var driver = GeneratorHarness.CreateDriver().RunGenerators(TwoModels());
        var result = driver.GetRunResult().Results.Single();
        var values = result.TrackedSteps
            .Where(s => s.Key.StartsWith("ModelDsl.", StringComparison.Ordinal))
            .SelectMany(s => s.Value).SelectMany(s => s.Outputs).Select(o => o.Value).ToArray();
        Assert.NotEmpty(values);
        foreach (var value in values) AssertNoBannedObjects(value, new HashSet<object>(ReferenceEqualityComparer.Instance), "root");
    }

    private static void AssertNoBannedObjects(object? node, HashSet<object> seen, string path)
    {
        if (node is null || node is string || node.GetType().IsPrimitive || node.GetType().IsEnum) return;
        if (!node.GetType().IsValueType && !seen.Add(node)) return;
        Assert.False(node is ISymbol or SyntaxNode or SyntaxTree or Compilation or SemanticModel or Location,
            $"{path} holds a {node.GetType().Name}");

        if (node is IEnumerable items)
        {
            int i = 0;
            foreach (var item in items) AssertNoBannedObjects(item, seen, $"{path}[{i++}]");
        }
        foreach (var field in node.GetType().GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
            AssertNoBannedObjects(field.GetValue(node), seen, path + "." + field.Name);
    }
}
