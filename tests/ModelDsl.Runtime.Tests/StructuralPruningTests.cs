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
    public void StructuredCutWalk_FindsTheNormAndTheConsumer_OrWhatStopsIt()
    {
        // The one walk the compiler (MD0305, ParametersAfterPasses) and the pipeline both use, on plain layer kinds.
        static CutPath Walk(LayerKind producer, params CutLayer[] after) => StructuredCut.Walk(producer, after);
        var flatten = new CutLayer(LayerKind.Flatten, FlattensChannels: true);

        Assert.Equal(new CutPath(-1, false, 2, -1), Walk(LayerKind.Linear, new(LayerKind.ReLU), new(LayerKind.Dropout), new(LayerKind.Linear)));
        Assert.Equal(new CutPath(0, true, 5, -1), Walk(LayerKind.Conv2d, new(LayerKind.BatchNorm2d), new(LayerKind.ReLU), new(LayerKind.MaxPool2d), flatten, new(LayerKind.Dropout), new(LayerKind.Linear)));
        Assert.Equal(new CutPath(0, false, 2, -1), Walk(LayerKind.Conv2d, new(LayerKind.BatchNorm2d), new(LayerKind.AvgPool2d), new(LayerKind.Conv2d)));
        // Stops: a second norm, a norm after a Linear, a grouped or flattened convolution, a Flatten of other dims,
        // a Linear straight after a convolution, an unknown module; and no consumer at all.
        Assert.Equal(new CutPath(0, false, -1, 1), Walk(LayerKind.Conv2d, new(LayerKind.BatchNorm2d), new(LayerKind.BatchNorm2d), new(LayerKind.Conv2d)));
        Assert.Equal(new CutPath(-1, false, -1, 0), Walk(LayerKind.Linear, new(LayerKind.BatchNorm2d), new(LayerKind.Linear)));
        Assert.Equal(new CutPath(-1, false, -1, 0), Walk(LayerKind.Conv2d, new CutLayer(LayerKind.Conv2d, Groups: 2)));
        Assert.Equal(new CutPath(-1, true, -1, 1), Walk(LayerKind.Conv2d, flatten, new(LayerKind.Conv2d)));
        Assert.Equal(new CutPath(-1, false, -1, 0), Walk(LayerKind.Conv2d, new(LayerKind.Flatten), new(LayerKind.Linear)));
        Assert.Equal(new CutPath(-1, false, -1, 0), Walk(LayerKind.Conv2d, new CutLayer(LayerKind.Linear)));
        Assert.Equal(new CutPath(-1, false, -1, 1), Walk(LayerKind.Linear, new(LayerKind.GELU), new(null), new(LayerKind.Linear)));
        Assert.Equal(new CutPath(-1, false, -1, -1), Walk(LayerKind.Linear, new CutLayer(LayerKind.ReLU)));
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
