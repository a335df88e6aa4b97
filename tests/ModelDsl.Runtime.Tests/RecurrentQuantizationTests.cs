using System.Collections.Generic;
using System.IO;
using System.Text.Json;
using ModelDsl.Runtime.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// Dynamic int8 LSTM and GRU against PyTorch 1.13's <c>quantize_dynamic</c> on the onednn engine
/// (Oracles/rnn_quantization.json, written by Oracles/gen_rnn_quant.py): int8 weights and scales of every layer and
/// direction exactly, outputs and final states to a few float32 ulps; one and two layers, bidirectional, batch-first
/// or not, with and without initial states.
/// </summary>
[Collection(TorchGlobalRandom.Name)]
public class RecurrentQuantizationTests
{
    private static readonly JsonElement Vectors = OracleVectors.Load("rnn_quantization.json");

    public static IEnumerable<object[]> Cases() =>
        Vectors.GetProperty("cases").EnumerateArray().Select(c => new object[] { OracleVectors.Id(c) });

    private static JsonElement Case(string id) => Vectors.GetProperty("cases").EnumerateArray().Single(e => OracleVectors.Id(e) == id);

    private static bool IsLstm(JsonElement c) => c.GetProperty("mode").GetString() == "LSTM";

    private static RecurrentOptions OptionsOf(JsonElement c) => new(
        c.GetProperty("input_size").GetInt64(), c.GetProperty("hidden_size").GetInt64(), c.GetProperty("num_layers").GetInt64(),
        c.GetProperty("bidirectional").GetBoolean(), c.GetProperty("batch_first").GetBoolean());

    /// <summary>A TorchSharp LSTM or GRU with PyTorch's parameters, by name.</summary>
    private static nn.Module FloatModule(JsonElement c)
    {
        var o = OptionsOf(c);
        nn.Module m = IsLstm(c)
            ? nn.LSTM(o.InputSize, o.HiddenSize, o.NumLayers, batchFirst: o.BatchFirst, bidirectional: o.Bidirectional)
            : nn.GRU(o.InputSize, o.HiddenSize, o.NumLayers, batchFirst: o.BatchFirst, bidirectional: o.Bidirectional);
        CopyParameters(c, m);
        return m;
    }

    private static void CopyParameters(JsonElement c, nn.Module m)
    {
        var parameters = m.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var expected = c.GetProperty("parameters");
        Assert.Equal(expected.EnumerateObject().Select(p => p.Name).OrderBy(n => n), parameters.Keys.OrderBy(n => n));
        using (no_grad())
        {
            foreach (var p in expected.EnumerateObject())
                parameters[p.Name].copy_(tensor(OracleVectors.Floats(p.Value)).reshape(parameters[p.Name].shape));
        }
    }

    private static Tensor? State(JsonElement c, string name)
    {
        var v = c.GetProperty(name);
        if (v.ValueKind != JsonValueKind.Array) return null;
        var o = OptionsOf(c);
        long batch = c.GetProperty("x_shape")[o.BatchFirst ? 0 : 1].GetInt64();
        return tensor(OracleVectors.Floats(v)).reshape(o.NumLayers * o.Directions, batch, o.HiddenSize);
    }

    /// <summary>
    /// Agreement to a few float32 ulps of the values' magnitude (measured: at most 0.625 of one, over all cases and
    /// outputs). PyTorch's qlinear on onednn and ours round the output scaling differently by an ulp at times; the
    /// differences do not grow over the steps, because they are far below the activation quantisation step.
    /// </summary>
    private static void AssertClose(float[] expected, float[] actual, string what, int ulps = 8)
    {
        Assert.Equal(expected.Length, actual.Length);
        float tolerance = ulps * 1.1920929e-07f * Math.Max(1f, expected.Max(Math.Abs));
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"{what}[{i}]: PyTorch {expected[i]:R}, ours {actual[i]:R} (tolerance {tolerance:R})");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void DynamicInt8_EqualsPyTorch(string id)
    {
        using var scope = NewDisposeScope();
        var c = Case(id);
        var o = OptionsOf(c);
        var source = FloatModule(c);
        var x = OracleVectors.Tensor(c.GetProperty("x"), c.GetProperty("x_shape"));
        Tensor y, h;
        Tensor? cell = null;
        nn.Module quantized;
        if (IsLstm(c))
        {
            var q = Quantize.Dynamic((LSTM)source, QuantizeMode.DynamicInt8);
            Assert.Equal(o, q.Options);
            var h0 = State(c, "h0");
            (y, h, cell) = q.call(x, h0 is null ? null : (h0, State(c, "c0")!));
            quantized = q;
        }
        else
        {
            var q = Quantize.Dynamic((GRU)source, QuantizeMode.DynamicInt8);
            Assert.Equal(o, q.Options);
            (y, h) = q.call(x, State(c, "h0"));
            quantized = q;
        }

        // The int8 weights and scales of every layer and direction, as torch packed them.
        var products = quantized.named_modules().Where(m => m.module is DynamicQuantizedLinear).ToDictionary(m => m.name, m => (DynamicQuantizedLinear)m.module);
        var cells = c.GetProperty("cells").EnumerateArray().ToArray();
        Assert.Equal(cells.Length * 2, products.Count);
        for (int k = 0; k < cells.Length; k++)
        {
            string suffix = $"l{k / o.Directions}{(k % o.Directions == 1 ? "_reverse" : "")}";
            foreach (var which in new[] { "ih", "hh" })
            {
                var p = products[$"{which}_{suffix}"];
                Assert.Equal(cells[k].GetProperty("scale_" + which).GetSingle(), p.WeightScale);
                Assert.Equal(OracleVectors.Longs(cells[k].GetProperty("qweight_" + which)), p.weight.to(ScalarType.Int64).data<long>().ToArray());
            }
        }

        Assert.Equal(OracleVectors.Longs(c.GetProperty("y_shape")), y.shape);
        AssertClose(OracleVectors.Floats(c.GetProperty("y")), y.contiguous().data<float>().ToArray(), id + " output");
        AssertClose(OracleVectors.Floats(c.GetProperty("h_n")), h.data<float>().ToArray(), id + " h_n");
        if (cell is not null)
            AssertClose(OracleVectors.Floats(c.GetProperty("c_n")), cell.data<float>().ToArray(), id + " c_n");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void FloatModule_EqualsPyTorchsFloatOutput_SoTheWeightsAndGateOrderAgree(string id)
    {
        using var scope = NewDisposeScope();
        var c = Case(id);
        var source = FloatModule(c);
        var x = OracleVectors.Tensor(c.GetProperty("x"), c.GetProperty("x_shape"));
        var h0 = State(c, "h0");
        var y = source is LSTM lstm ? lstm.call(x, h0 is null ? null : (h0, State(c, "c0")!)).Item1 : ((GRU)source).call(x, h0).Item1;
        var expected = OracleVectors.Floats(c.GetProperty("y_float"));
        var actual = y.contiguous().data<float>().ToArray();
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5f, $"{id}[{i}]: {expected[i]} vs {actual[i]}");
    }

    [Fact]
    public void RecurrentLayer_InASequential_IsQuantisedByQuantizeDynamic_AndSavesAndLoads()
    {
        using var scope = NewDisposeScope();
        var c = Case("lstm_7to8_2layers_bidir_batchfirst_init");
        var o = OptionsOf(c);
        var layer = RecurrentLayer.LSTM(o.InputSize, o.HiddenSize, o.NumLayers, o.Bidirectional, o.BatchFirst);
        CopyParameters(c, layer.Module);
        var model = nn.Sequential(("rnn", layer), ("head", nn.Linear(2 * o.HiddenSize, 3)));
        var x = OracleVectors.Tensor(c.GetProperty("x"), c.GetProperty("x_shape"));

        // The weights are registered once, under the layer's name and 'rnn' (PyTorch's keys below that).
        Assert.Equal(c.GetProperty("parameters").EnumerateObject().Select(p => "rnn.rnn." + p.Name).Concat(new[] { "head.weight", "head.bias" }).OrderBy(k => k),
            model.state_dict().Keys.OrderBy(k => k));
        var quantized = Quantize.Dynamic(model, QuantizeMode.DynamicInt8);
        var inner = Assert.IsType<RecurrentLayer>(quantized.named_children().First().module);
        Assert.True(inner.IsQuantized);
        Assert.False(layer.IsQuantized); // the original is untouched
        Assert.Equal(1 + 2 * 4, Quantize.QuantizedLayers(quantized).Count()); // the head and four cells' two products

        // From zero states, the chain's LSTM step is the quantised LSTM's output sequence.
        var direct = Quantize.Dynamic((LSTM)layer.Module, QuantizeMode.DynamicInt8).call(x, null).Item1;
        var head = (DynamicQuantizedLinear)quantized.named_children().Last().module;
        Assert.True(quantized.call(x).equal(head.call(direct)).all().item<bool>());

        string path = Path.Combine(Path.GetTempPath(), $"modeldsl-rnn-{Guid.NewGuid():N}.bin");
        try
        {
            Quantize.Save(quantized, path);
            var loaded = Quantize.Load(nn.Sequential(("rnn", RecurrentLayer.LSTM(o.InputSize, o.HiddenSize, o.NumLayers, o.Bidirectional, o.BatchFirst)),
                ("head", nn.Linear(2 * o.HiddenSize, 3))), path);
            Assert.True(loaded.call(x).equal(quantized.call(x)).all().item<bool>());
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void OtherModes_RunTheSameLoopWithTheirProducts()
    {
        using var scope = NewDisposeScope();
        var c = Case("gru_3to16_2layers_batchfirst");
        var gru = (GRU)FloatModule(c);
        var x = OracleVectors.Tensor(c.GetProperty("x"), c.GetProperty("x_shape"));
        var reference = gru.call(x, null).Item1;
        foreach (var mode in new[] { QuantizeMode.Float16, QuantizeMode.WeightOnlyInt8 })
        {
            var q = Quantize.Dynamic(gru, mode);
            Assert.Equal(mode, q.Mode);
            var y = q.call(x, null).Item1;
            // Float16 weights are within 2^-11 relatively, int8 ones within half a step: both stay near the float GRU.
            float limit = mode == QuantizeMode.Float16 ? 1e-3f : 5e-2f;
            Assert.True((y - reference).abs().max().item<float>() < limit, $"{mode}: {(y - reference).abs().max().item<float>()}");
        }
    }

    [Theory]
    [InlineData(1, 4)]
    [InlineData(1, 300)]
    [InlineData(3, 64)]
    public void NarrowInputs_StayCloseToTheFloatLayer(int features, int batch)
    {
        using var scope = NewDisposeScope();
        manual_seed(8);
        var lstm = nn.LSTM(features, 16, batchFirst: true);
        var x = randn(batch, 16, features);
        var reference = lstm.call(x, null).Item1;
        var y = Quantize.Dynamic(lstm, QuantizeMode.DynamicInt8).call(x, null).Item1;
        float difference = (y - reference).abs().max().item<float>();
        Assert.True(difference < 0.05f, $"{features} features, batch {batch}: int8 differs by {difference}");
    }

    [Fact]
    public void OneFeatureLinear_ComputesTheOuterProductOfItsInt8Values()
    {
        // The case behind IntMM's one-feature path: libtorch's int8 GEMM misreads a [1, n] weight view.
        using var scope = NewDisposeScope();
        manual_seed(9);
        var linear = nn.Linear(1, 8);
        var q = (DynamicQuantizedLinear)Quantize.Dynamic(linear, QuantizeMode.DynamicInt8);
        var x = randn(5, 1);
        var (aScale, zeroPoint) = QuantizationRules.ChooseActivationQParams(x.min().item<float>(), x.max().item<float>());
        var qa = x.mul((float)(1.0 / aScale)).add_(zeroPoint).round_().clamp_(0, 127).sub_(zeroPoint);
        var expected = qa.matmul(q.weight.to(ScalarType.Float32).t()).mul_((float)((double)aScale * q.WeightScale)).add_(linear.bias!);
        Assert.True(q.call(x).allclose(expected, rtol: 0, atol: 1e-6), $"{q.call(x)} vs {expected}");
    }

    [Fact]
    public void WrongInput_IsAClearArgumentException()
    {
        using var scope = NewDisposeScope();
        var lstm = Quantize.Dynamic(nn.LSTM(4, 3, batchFirst: true), QuantizeMode.DynamicInt8);
        var e = Assert.Throws<ArgumentException>(() => lstm.call(randn(2, 5, 6), null));
        Assert.Contains("(batch, seq, feature) with 4 features", e.Message);
        var h = Assert.Throws<ArgumentException>(() => lstm.call(randn(2, 5, 4), (randn(1, 3, 3), randn(1, 3, 3))));
        Assert.Contains("h0 must be [1, 2, 3]", h.Message);
    }
}
