using ModelDsl.Generators.Parsing;
using ModelDsl.Shapes;

namespace ModelDsl.Generators.Tests;

/// <summary>
/// Shape inference without Roslyn (<see cref="ShapeInference"/>): plain layer descriptions in, shapes, parameter
/// counts and problems out — the same answers the generator reports on the attributes.
/// </summary>
public class ShapeInferenceTests
{
    private static LayerInput Layer(string name, LayerKind kind, LayerParams p, string? tiedTo = null) =>
        new(name, false, "public", "T", kind.ToString(), kind, p, $"[{kind}]", Broken: false, TiedTo: tiedTo);

    [Fact]
    public void Mlp_InfersSizesAndCounts_AndAWrongSizeIsOneProblemWithTheInferredValue()
    {
        var input = new[] { Dim.Sym("B"), Dim.Of(64) };
        var ok = ShapeInference.Infer("M", new[]
        {
            Layer("Hidden", LayerKind.Linear, new LayerParams { Out = 32 }),
            Layer("Act", LayerKind.ReLU, new LayerParams()),
            Layer("Output", LayerKind.Linear, new LayerParams { Out = 10 }),
        }, input, inputIsInteger: false, userForward: false, failedBefore: false);
        Assert.False(ok.Failed);
        Assert.Empty(ok.Problems);
        Assert.Equal("(B, 10)", ShapeText.Format(ok.Output!));
        Assert.Equal(64 * 32 + 32 + 32 * 10 + 10, ok.Parameters);
        Assert.Equal(new long[] { 64, -1, 32 }, ok.Layers.Select(l => l.Args.In).ToArray());

        var wrong = ShapeInference.Infer("M", new[]
        {
            Layer("Hidden", LayerKind.Linear, new LayerParams { Out = 32 }),
            Layer("Output", LayerKind.Linear, new LayerParams { In = 16, Out = 10 }),
        }, input, inputIsInteger: false, userForward: false, failedBefore: false);
        Assert.True(wrong.Failed);
        var problem = Assert.Single(wrong.Problems);
        Assert.Equal((1, ShapeProblemKind.Shape, "inFeatures", 32L), (problem.Layer, problem.Kind, problem.Argument, problem.Inferred));
        Assert.Equal("Output", problem.Args[0]);
        Assert.Null(wrong.Output);
    }

    [Fact]
    public void TiedHead_IsCountedOnce_AndATieToANonEmbeddingIsATieProblem()
    {
        var ids = new[] { Dim.Sym("B"), Dim.Sym("T") };
        var tied = ShapeInference.Infer("Gpt", new[]
        {
            Layer("Tokens", LayerKind.Embedding, new LayerParams { Count = 65, Out = 48 }),
            Layer("Head", LayerKind.Linear, new LayerParams { Out = 65 }, tiedTo: "Tokens"),
        }, ids, inputIsInteger: true, userForward: false, failedBefore: false);
        Assert.Empty(tied.Problems);
        Assert.Equal("(B, T, 65)", ShapeText.Format(tied.Output!));
        Assert.Equal(65 * 48 + 65, tied.Parameters);

        var bad = ShapeInference.Infer("M", new[]
        {
            Layer("Hidden", LayerKind.Linear, new LayerParams { Out = 64 }),
            Layer("Head", LayerKind.Linear, new LayerParams { Out = 64 }, tiedTo: "Hidden"),
        }, new[] { Dim.Sym("B"), Dim.Of(64) }, inputIsInteger: false, userForward: false, failedBefore: false);
        var problem = Assert.Single(bad.Problems);
        Assert.Equal((1, ShapeProblemKind.Tie, "TiedTo"), (problem.Layer, problem.Kind, problem.Argument));
        Assert.Contains("a Linear can share the table of an [Embedding]", problem.Args[1]);
    }

    [Fact]
    public void UnknownInput_RequiresTheSizeInferenceWouldHaveSupplied()
    {
        var result = ShapeInference.Infer("Custom", new[] { Layer("Hidden", LayerKind.Linear, new LayerParams { Out = 32 }) },
            input: null, inputIsInteger: false, userForward: true, failedBefore: false);
        var problem = Assert.Single(result.Problems);
        Assert.Equal(ShapeProblemKind.NotInferable, problem.Kind);
        Assert.Equal(new[] { "Hidden", "in-features", "model 'Custom' defines its own forward", "Linear(inFeatures, 32)" }, problem.Args);
    }
}
