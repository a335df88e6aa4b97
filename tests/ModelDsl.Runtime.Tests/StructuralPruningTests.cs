using System.Collections.Generic;
using ModelDsl.Runtime.Pruning;
using ModelDsl.Shapes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// The structural oracle: a model shrunk by <see cref="Prune"/>'s Shrink* helpers computes the same outputs as the
/// original model with the removed neurons masked (weight rows, biases and BatchNorm affine entries zeroed through
/// <see cref="Prune.LnStructured{T}(T, string, PruneAmount, double, long)"/> and <see cref="Prune.CustomFromMask{T}"/>).
/// </summary>
[Collection(TorchGlobalRandom.Name)]
public class StructuralPruningTests
{
    private static Tensor RowMask(Tensor weightMask) =>
        weightMask.reshape(weightMask.shape[0], -1).sum(1).ne(0).to(ScalarType.Float32);

    [Theory]
    [InlineData(0.5)]
    [InlineData(0.3)]
    [InlineData(0.0)]
    public void ShrunkMlp_EqualsMaskedMlp(double amount)
    {
        using var scope = NewDisposeScope();
        Sequential Build(out Linear fc1, out Linear fc2)
        {
            manual_seed(11);
            fc1 = nn.Linear(12, 10);
            fc2 = nn.Linear(10, 3);
            return nn.Sequential(("fc1", fc1), ("act", nn.ReLU()), ("fc2", fc2));
        }

        var masked = Build(out var m1, out _);
        Prune.LnStructured(m1, "weight", amount, 2, 0);
        Prune.CustomFromMask(m1, "bias", RowMask(m1.get_buffer("weight_mask")!));

        var original = Build(out var o1, out var o2);
        var (s1, s2) = Prune.ShrinkLinearOutputs(o1, o2, amount);
        var shrunk = nn.Sequential(("fc1", s1), ("act", nn.ReLU()), ("fc2", s2));

        long expectedKept = 10 - (long)Math.Round(amount * 10, MidpointRounding.ToEven);
        Assert.Equal(expectedKept, s1.out_features);
        Assert.Equal(expectedKept, s2.in_features);
        Assert.Equal(12, s1.in_features);
        Assert.Equal(10, o1.out_features); // the original is untouched

        var x = randn(7, 12);
        Assert.True(shrunk.call(x).allclose(masked.call(x), rtol: 1e-5, atol: 1e-6));
        long parameters = shrunk.parameters().Sum(p => p.numel());
        Assert.Equal(12 * expectedKept + expectedKept + expectedKept * 3 + 3, parameters);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ShrunkConvBatchNormConv_EqualsMasked(bool training)
    {
        using var scope = NewDisposeScope();
        Sequential Build(out Conv2d c1, out BatchNorm2d bn, out Conv2d c2)
        {
            manual_seed(12);
            c1 = nn.Conv2d(3, 8, 3, padding: 1);
            bn = nn.BatchNorm2d(8);
            c2 = nn.Conv2d(8, 5, 3, stride: 2);
            using (no_grad())
            {
                bn.running_mean!.copy_(randn(8));
                bn.running_var!.copy_(rand(8) + 0.5);
                bn.weight!.copy_(randn(8));
                bn.bias!.copy_(randn(8));
            }
            var model = nn.Sequential(("c1", c1), ("bn", bn), ("act", nn.ReLU()), ("pool", nn.MaxPool2d(2)), ("c2", c2));
            model.train(training);
            return model;
        }

        var masked = Build(out var m1, out var mbn, out _);
        Prune.LnStructured(m1, "weight", 0.5, 2, 0);
        var rows = RowMask(m1.get_buffer("weight_mask")!);
        Prune.CustomFromMask(m1, "bias", rows);
        Prune.CustomFromMask(mbn, "weight", rows);
        Prune.CustomFromMask(mbn, "bias", rows);

        var original = Build(out var o1, out var obn, out var o2);
        var (s1, sbn, s2) = Prune.ShrinkConv2dOutputs(o1, obn, o2, 0.5);
        var shrunk = nn.Sequential(("c1", s1), ("bn", sbn!), ("act", nn.ReLU()), ("pool", nn.MaxPool2d(2)), ("c2", s2));
        shrunk.train(training);
        Assert.Equal(4, s1.out_channels);
        Assert.Equal(4, sbn!.num_features);
        Assert.Equal(4, s2.in_channels);
        Assert.Equal(new long[] { 2, 2 }, s2.stride);

        var x = randn(2, 3, 12, 12);
        Assert.True(shrunk.call(x).allclose(masked.call(x), rtol: 1e-5, atol: 1e-5));
        if (training) // both updated their running statistics from the same batch, on the kept channels
        {
            var kept = Prune.ChannelsToKeep(o1.weight, 0.5);
            Assert.True(sbn.running_mean!.allclose(mbn.running_mean!.index_select(0, tensor(kept)), rtol: 1e-5, atol: 1e-6));
        }
    }

    [Fact]
    public void ShrunkConvFlattenLinear_EqualsMasked()
    {
        using var scope = NewDisposeScope();
        Sequential Build(out Conv2d c1, out Linear head)
        {
            manual_seed(13);
            c1 = nn.Conv2d(1, 6, 3, padding: 1);
            head = nn.Linear(6 * 4 * 4, 10);
            var model = nn.Sequential(("c1", c1), ("act", nn.ReLU()), ("pool", nn.MaxPool2d(2)), ("flat", nn.Flatten()), ("head", head));
            model.eval();
            return model;
        }

        var masked = Build(out var m1, out _);
        Prune.LnStructured(m1, "weight", 2, 2, 0);
        Prune.CustomFromMask(m1, "bias", RowMask(m1.get_buffer("weight_mask")!));

        var original = Build(out var o1, out var oh);
        var (s1, norm, sh) = Prune.ShrinkConv2dOutputs(o1, null, oh, 2); // the count the masked model pruned
        Assert.Null(norm);
        Assert.Equal(64, sh.in_features);
        var shrunk = nn.Sequential(("c1", s1), ("act", nn.ReLU()), ("pool", nn.MaxPool2d(2)), ("flat", nn.Flatten()), ("head", sh));
        shrunk.eval();

        var x = randn(3, 1, 8, 8);
        Assert.True(shrunk.call(x).allclose(masked.call(x), rtol: 1e-5, atol: 1e-6));
    }

    [Fact]
    public void ChannelsToKeep_RanksByL2_AndRoundsLikeLnStructured()
    {
        using var scope = NewDisposeScope();
        var w = tensor(new[] { 1f, 2, 3, 4, 0.5f, 0.5f }).reshape(3, 2); // SEMANTICS.md P4: norms 2.24, 5, 0.71
        Assert.Equal(new long[] { 0, 1 }, Prune.ChannelsToKeep(w, 1));
        Assert.Equal(new long[] { 1 }, Prune.ChannelsToKeep(w, 0.5)); // round(1.5) = 2
        Assert.Equal(new long[] { 0, 1, 2 }, Prune.ChannelsToKeep(w, 0.0));
    }

    [Fact]
    public void StructuredCutGroup_OfAChain_FindsTheNormsAndTheConsumer_OrWhatStopsIt()
    {
        // The one search the compiler (MD0027-MD0030, MD0305, ParametersAfterPasses) and the pipeline both use, on a
        // chain of plain layer kinds: P (4 outputs) then the layers L0, L1, ... each reading the one before.
        static ChannelGroup Cut(LayerKind producer, params CutNode[] after)
        {
            var nodes = new List<CutNode> { new("P", producer, new[] { "input" }, Out: 4, In: 3) };
            for (int i = 0; i < after.Length; i++) nodes.Add(after[i] with { Name = "L" + i, Sources = new[] { nodes[^1].Name } });
            return StructuredCut.Group(nodes, "P", new long[] { 3, 4, 4 }, null);
        }
        static CutNode Of(LayerKind kind) => new("", kind, Array.Empty<string>());
        static CutNode Consumer(LayerKind kind, long inputs, long groups = 1) => new("", kind, Array.Empty<string>(), Out: 2, In: inputs, Groups: groups);
        var flatten = new CutNode("", LayerKind.Flatten, Array.Empty<string>(), FlattensChannels: true);
        static string Found(ChannelGroup g) => g.Blocked == GroupBlock.None
            ? $"norms [{string.Join(", ", g.Norms.Select(n => n.Layer))}] consumers [{string.Join(", ", g.Consumers.Select(c => $"{c.Layer}x{c.Spatial}"))}]"
            : $"{g.Blocked} at {g.Blocker}";

        Assert.Equal("norms [] consumers [L2x1]", Found(Cut(LayerKind.Linear, Of(LayerKind.ReLU), Of(LayerKind.Dropout), Consumer(LayerKind.Linear, 4), Of(LayerKind.ReLU))));
        Assert.Equal("norms [L0] consumers [L5x4]", Found(Cut(LayerKind.Conv2d, Of(LayerKind.BatchNorm2d), Of(LayerKind.ReLU), Of(LayerKind.MaxPool2d), flatten, Of(LayerKind.Dropout), Consumer(LayerKind.Linear, 16), Of(LayerKind.ReLU))));
        Assert.Equal("norms [L0] consumers [L2x1]", Found(Cut(LayerKind.Conv2d, Of(LayerKind.BatchNorm2d), Of(LayerKind.AvgPool2d), Consumer(LayerKind.Conv2d, 4), Of(LayerKind.ReLU))));
        // Two BatchNorms both shrink (the chain walk before groups stopped at the second).
        Assert.Equal("norms [L0, L1] consumers [L2x1]", Found(Cut(LayerKind.Conv2d, Of(LayerKind.BatchNorm2d), Of(LayerKind.BatchNorm2d), Consumer(LayerKind.Conv2d, 4), Of(LayerKind.ReLU))));
        // Stops: a norm after a Linear, a grouped or flattened convolution, a Flatten of other dims, a Linear straight
        // after a convolution, an unknown module; and the model output.
        Assert.Equal("Layer at L0", Found(Cut(LayerKind.Linear, Of(LayerKind.BatchNorm2d), Consumer(LayerKind.Linear, 4))));
        Assert.Equal("Layer at L0", Found(Cut(LayerKind.Conv2d, Consumer(LayerKind.Conv2d, 4, groups: 2))));
        Assert.Equal("Layer at L1", Found(Cut(LayerKind.Conv2d, flatten, Consumer(LayerKind.Conv2d, 4))));
        Assert.Equal("Layer at L0", Found(Cut(LayerKind.Conv2d, Of(LayerKind.Flatten), Consumer(LayerKind.Linear, 64))));
        Assert.Equal("Layer at L0", Found(Cut(LayerKind.Conv2d, Consumer(LayerKind.Linear, 4))));
        Assert.Equal("Layer at L1", Found(Cut(LayerKind.Linear, Of(LayerKind.GELU), new CutNode("", null, Array.Empty<string>()), Consumer(LayerKind.Linear, 4))));
        Assert.Equal("Output at L0", Found(Cut(LayerKind.Linear, Of(LayerKind.ReLU))));
    }

    [Fact]
    public void ChannelsToKeep_OfAGroup_SumsEachProducersNorms_AndOfOneWeightIsTheSingleLayerRanking()
    {
        using var scope = NewDisposeScope();
        var a = tensor(new[] { 3f, 0, 0, 1, 2, 2 }).reshape(3, 2);   // L2 norms 3, 1, 2.83; L1 norms 3, 1, 4
        var b = tensor(new[] { 0f, 0, 4, 0, 0, 0 }).reshape(3, 2);   // 0, 4, 0
        Assert.Equal(new long[] { 0, 2 }, Prune.ChannelsToKeep(a, 1));
        Assert.Equal(Prune.ChannelsToKeep(a, 1), Prune.ChannelsToKeep(new[] { a }, 1, 2));
        // Summed over the group: 3, 5, 2.83 → channel 2 goes.
        Assert.Equal(new long[] { 0, 1 }, Prune.ChannelsToKeep(new[] { a, b }, 1, 2));
        // With n = 1: 3, 5, 4 → channel 0 goes.
        Assert.Equal(new long[] { 1, 2 }, Prune.ChannelsToKeep(new[] { a, b }, 1, 1));
        Assert.Throws<ArgumentException>(() => Prune.ChannelsToKeep(new[] { a, b.reshape(2, 3) }, 1, 2));
    }

    [Fact]
    public void BadShrinks_AreRejectedClearly()
    {
        using var scope = NewDisposeScope();
        var a = nn.Linear(4, 6);
        Assert.Contains("reads 5 features but the producer makes 6", Assert.Throws<ArgumentException>(() => Prune.ShrinkLinearOutputs(a, nn.Linear(5, 2), 0.5)).Message);
        Assert.Contains("at least one channel", Assert.Throws<ArgumentException>(() => Prune.ShrinkLinearOutputs(a, nn.Linear(6, 2), 1.0)).Message);
        Assert.Contains("ascending, distinct", Assert.Throws<ArgumentException>(() => Prune.ShrinkLinearOutputs(a, nn.Linear(6, 2), new long[] { 3, 1 })).Message);
        Prune.L1Unstructured(a, "weight", 0.5);
        Assert.Contains("Prune.Remove", Assert.Throws<InvalidOperationException>(() => Prune.ShrinkLinearOutputs(a, nn.Linear(6, 2), 0.5)).Message);
        var grouped = nn.Conv2d(4, 8, 3, groups: 2);
        Assert.Contains("grouped", Assert.Throws<NotSupportedException>(() => Prune.ShrinkConv2dOutputs(grouped, null, nn.Conv2d(8, 2, 1), 0.5)).Message);
        Assert.Contains("not a multiple", Assert.Throws<ArgumentException>(() => Prune.ShrinkConv2dOutputs(nn.Conv2d(1, 3, 3), null, nn.Linear(10, 2), 0.5)).Message);
    }
}
