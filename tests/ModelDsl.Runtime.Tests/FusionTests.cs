using System.Collections.Generic;
using System.Text.Json;
using ModelDsl.Runtime.Optimization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// BatchNorm folding (<see cref="Fusion"/>) against PyTorch 1.13's <c>torch.nn.utils.fusion</c>
/// (Oracles/gen_fusion.py writes fusion.json): the fused weight and bias, and the fused layer's output against the
/// unfused pair's, for convolutions with and without bias, a BatchNorm without affine, and Linear + BatchNorm1d.
/// </summary>
public sealed class FusionTests
{
    public static IEnumerable<object[]> Cases() =>
        OracleVectors.Load("fusion.json").GetProperty("cases").EnumerateArray().Select(c => new object[] { OracleVectors.Id(c) });

    private static JsonElement Case(string id) =>
        OracleVectors.Load("fusion.json").GetProperty("cases").EnumerateArray().First(c => OracleVectors.Id(c) == id);

    private static void Load(nn.Module module, JsonElement state)
    {
        using var noGrad = no_grad();
        foreach (var (name, tensor) in module.state_dict())
        {
            if (name == "num_batches_tracked") continue;
            var entry = state.GetProperty(name);
            tensor.copy_(OracleVectors.Tensor(entry.GetProperty("values"), entry.GetProperty("shape")));
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void FusedLayer_MatchesPyTorch(string id)
    {
        var c = Case(id);
        long input = c.GetProperty("in").GetInt64(), output = c.GetProperty("out").GetInt64();
        bool bias = c.GetProperty("bias").GetBoolean(), affine = c.GetProperty("affine").GetBoolean();
        double eps = c.GetProperty("eps").GetDouble();
        using var x = OracleVectors.Tensor(c.GetProperty("x").GetProperty("values"), c.GetProperty("x").GetProperty("shape"));
        nn.Module<Tensor, Tensor> fused;
        Tensor unfused;
        if (c.GetProperty("kind").GetString() == "conv")
        {
            long k = c.GetProperty("kernel").GetInt64(), padding = c.GetProperty("padding").GetInt64();
            using var conv = nn.Conv2d(input, output, k, padding: padding, bias: bias);
            using var bn = nn.BatchNorm2d(output, eps, affine: affine);
            Load(conv, c.GetProperty("layer"));
            Load(bn, c.GetProperty("bn"));
            conv.eval(); bn.eval();
            var f = Fusion.FuseConvBnEval(conv, bn);
            AssertClose(c.GetProperty("fused_weight"), f.weight);
            AssertClose(c.GetProperty("fused_bias"), f.bias!);
            fused = f;
            using (no_grad()) unfused = bn.call(conv.call(x));
        }
        else
        {
            using var linear = nn.Linear(input, output, hasBias: bias);
            using var bn = nn.BatchNorm1d(output, eps);
            Load(linear, c.GetProperty("layer"));
            Load(bn, c.GetProperty("bn"));
            linear.eval(); bn.eval();
            var f = Fusion.FuseLinearBnEval(linear, bn);
            AssertClose(c.GetProperty("fused_weight"), f.weight);
            AssertClose(c.GetProperty("fused_bias"), f.bias!);
            fused = f;
            using (no_grad()) unfused = bn.call(linear.call(x));
        }
        using (fused)
        using (unfused)
        using (no_grad())
        {
            var y = fused.call(x);
            // The fused layer computes what PyTorch's unfused pair computed, and what ours computes, up to float rounding.
            AssertClose(c.GetProperty("y").GetProperty("values"), y, 1e-5f);
            Assert.True(y.allclose(unfused, rtol: 1e-5, atol: 1e-5), $"{id}: fused output differs from bn(layer(x))");
        }
    }

    private static void AssertClose(JsonElement expected, Tensor actual, float tolerance = 0)
    {
        var want = OracleVectors.Floats(expected);
        var got = actual.detach().reshape(-1).data<float>().ToArray();
        Assert.Equal(want.Length, got.Length);
        for (int i = 0; i < want.Length; i++)
        {
            // Same formula, same float32 operations as PyTorch: within 2 ulps of the value (4 ulps of the magnitude for outputs).
            float bound = tolerance > 0 ? tolerance * Math.Max(1, Math.Abs(want[i])) : 2 * MathF.BitIncrement(Math.Abs(want[i])) - 2 * Math.Abs(want[i]);
            Assert.True(Math.Abs(want[i] - got[i]) <= bound, $"[{i}] expected {want[i]:R}, got {got[i]:R}");
        }
    }

    [Fact]
    public void TrainingModePair_IsRefused_AsPyTorchAsserts()
    {
        using var conv = nn.Conv2d(1, 2, 3);
        using var bn = nn.BatchNorm2d(2);
        var e = Assert.Throws<ArgumentException>(() => Fusion.FuseConvBnEval(conv, bn));
        Assert.Equal("Fusion only for eval!", e.Message);
    }

    [Fact]
    public void FoldedBatchNorm_PassesItsInputThrough_AndMarksTheSlot()
    {
        using var folded = new FoldedBatchNorm();
        using var x = randn(2, 3);
        Assert.Same(x, folded.call(x));
        Assert.Equal(new[] { FoldedBatchNorm.MarkerName }, folded.state_dict().Keys);
    }
}
