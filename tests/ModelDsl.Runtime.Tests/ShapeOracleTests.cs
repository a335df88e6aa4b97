using System.Collections.Generic;
using ModelDsl.Runtime.Tests.Oracle;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// libtorch is the oracle for the shape rules: for every layer of every model, the shape libtorch actually
/// produces must equal the shape the compiler inferred, and the parameters it allocates must equal the count.
/// </summary>
public class ShapeOracleTests
{
    // What the symbolic dims stand for in these runs.
    private static readonly Dictionary<string, long> Bindings = new() { ["B"] = 3, ["T"] = 5, ["N"] = 10 };

    public static IEnumerable<object[]> Models() => new[]
    {
        new object[] { "DenseZoo" }, new object[] { "Conv2dZoo" }, new object[] { "Conv1dZoo" },
        new object[] { "TokenZoo" }, new object[] { "Block" }, new object[] { "Stack" }, new object[] { "RectZoo" },
        new object[] { "GptZoo" }, new object[] { "RecurrentZoo" },
    };

    private static (nn.Module<Tensor, Tensor> Model, ModelSummary Summary) Create(string name) => name switch
    {
        "DenseZoo" => (new DenseZoo(), DenseZoo.Summary),
        "Conv2dZoo" => (new Conv2dZoo(), Conv2dZoo.Summary),
        "Conv1dZoo" => (new Conv1dZoo(), Conv1dZoo.Summary),
        "TokenZoo" => (new TokenZoo(), TokenZoo.Summary),
        "Block" => (new Block(), Block.Summary),
        "Stack" => (new Stack(), Stack.Summary),
        "RectZoo" => (new RectZoo(), RectZoo.Summary),
        "GptZoo" => (new GptZoo(), GptZoo.Summary),
        "RecurrentZoo" => (new RecurrentZoo(), RecurrentZoo.Summary),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Models))]
    public void EveryLayer_ProducesTheInferredShape(string name)
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        var (model, summary) = Create(name);
        model.eval();

        var input = summary.InputType == "Int64"
            ? randint(0, 50, Concrete(summary.Input), dtype: ScalarType.Int64)
            : randn(Concrete(summary.Input));

        var children = model.named_children().ToDictionary(c => c.name, c => c.module);
        Assert.Equal(summary.Layers.Select(l => l.Name), model.named_children().Select(c => c.name));

        var x = input;
        foreach (var layer in summary.Layers)
        {
            x = ((nn.Module<Tensor, Tensor>)children[layer.Name]).forward(x);
            Assert.True(Concrete(layer.OutputShape).SequenceEqual(x.shape),
                $"{name}.{layer.Name} ({layer.Kind}): compiler inferred {layer.OutputShape}, libtorch produced ({string.Join(", ", x.shape)})");
        }

        // The generated forward runs the same layers in the same order.
        Assert.Equal(x.shape, model.forward(input).shape);
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void EveryLayer_AllocatesTheCountedParameters(string name)
    {
        var (model, summary) = Create(name);
        // What the model lists under each layer: a tied weight (GptZoo's Head) is listed once, under the embedding.
        var listed = model.named_parameters().ToList();
        foreach (var layer in summary.Layers)
        {
            long actual = listed.Where(p => p.name.StartsWith(layer.Name + ".", StringComparison.Ordinal)).Sum(p => p.parameter.numel());
            Assert.True(layer.Parameters == actual, $"{name}.{layer.Name}: compiler counted {layer.Parameters}, libtorch allocated {actual}");
        }
        Assert.Equal(summary.TotalParameters, model.parameters().Sum(p => p.numel()));
        model.Dispose();
    }

    [Fact]
    public void RectangularWindows_AreInferredAsCountedByHand()
    {
        // Worked out from PyTorch's formula floor((L + 2p - d(k-1) - 1) / s) + 1 per axis, independently of the
        // generator; the test above then holds libtorch to the same shapes.
        Assert.Equal(new[] { "(B, 6, 17, 10)", "(B, 6, 8, 10)", "(B, 4, 4, 8)", "(B, 4, 2, 8)", "(B, 4, 1, 3)", "(B, 12)", "(B, 5)" },
            RectZoo.Summary.Layers.Select(l => l.OutputShape));
        Assert.Equal(6 * 2 * 3 * 5 + 6, RectZoo.Summary.Layers[0].Parameters);
        Assert.Equal(4 * 3 * 1 * 3, RectZoo.Summary.Layers[2].Parameters);
    }

    [Fact]
    public void ForwardAndBackward_RunThroughAGeneratedModel()
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        var model = new Stack();
        var x = randn(4, 10, 12);
        var target = tensor(new long[] { 0, 1, 2, 1 });
        var loss = nn.functional.cross_entropy(model.forward(x), target);
        loss.backward();
        Assert.All(model.parameters(), p =>
        {
            Assert.NotNull(p.grad);
            Assert.True(p.grad!.isfinite().all().item<bool>());
        });
        Assert.True(model.Head.weight!.grad!.abs().sum().item<float>() > 0);
    }

    /// <summary>"(B, 16, 8, 8)" with B = 3 → [3, 16, 8, 8]; products like "B*T" multiply.</summary>
    private static long[] Concrete(string shape) =>
        shape.Trim('(', ')').Split(',').Select(d => d.Trim())
            .Select(d => d.Split('*').Aggregate(1L, (acc, f) => acc * (long.TryParse(f, out var n) ? n : Bindings[f])))
            .ToArray();
}
