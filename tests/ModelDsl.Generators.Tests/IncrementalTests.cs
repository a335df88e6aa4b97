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
