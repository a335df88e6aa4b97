using System.Collections.Generic;
using System.IO;
using System.Text.Json;
using ModelDsl.Runtime.Pruning;
using ModelDsl.Runtime.Quantization;
using ModelDsl.Runtime.Tests.Oracle;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// <see cref="Quantize"/> against PyTorch 1.13's quantize_dynamic on the onednn engine (Oracles/quantization.json):
/// int8 weights and scales exactly, outputs to float32 rounding; SEMANTICS.md Q1–Q3; conversion of Sequential and
/// generated models (the original untouched); save and load with int8 weights.
/// </summary>
[Collection(TorchGlobalRandom.Name)]
public class QuantizationTests
{
    private static readonly JsonElement Vectors = OracleVectors.Load("quantization.json");

    public static IEnumerable<object[]> LinearCases() =>
        Vectors.GetProperty("linear").EnumerateArray().Select(c => new object[] { OracleVectors.Id(c) });

    private static Linear LinearFrom(JsonElement c)
    {
        long fin = c.GetProperty("in_features").GetInt64(), fout = c.GetProperty("out_features").GetInt64();
        bool hasBias = c.GetProperty("bias").ValueKind == JsonValueKind.Array;
        var linear = nn.Linear(fin, fout, hasBias);
        using (no_grad())
        {
            linear.weight.copy_(tensor(OracleVectors.Floats(c.GetProperty("weight"))).reshape(fout, fin));
            if (hasBias) linear.bias!.copy_(tensor(OracleVectors.Floats(c.GetProperty("bias"))));
        }
        return linear;
    }

    /// <summary>PyTorch's and this project's outputs agree to a few float32 ulps of the output's magnitude.</summary>
    private static void AssertCloseToFloatRounding(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        float scale = Math.Max(1f, expected.Max(Math.Abs));
        float tolerance = 4 * 1.1920929e-07f * scale;
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"{what}[{i}]: PyTorch {expected[i]:R}, ours {actual[i]:R} (tolerance {tolerance:R})");
    }

    [Theory]
    [MemberData(nameof(LinearCases))]
    public void DynamicInt8Linear_EqualsPyTorch(string id)
    {
        using var scope = NewDisposeScope();
        var c = Vectors.GetProperty("linear").EnumerateArray().Single(e => OracleVectors.Id(e) == id);
        var linear = LinearFrom(c);
        var q = Assert.IsType<DynamicQuantizedLinear>(Quantize.Dynamic(linear, QuantizeMode.DynamicInt8));

        Assert.Equal(ScalarType.Int8, q.weight.dtype);
        Assert.Equal(OracleVectors.Longs(c.GetProperty("qweight")), q.weight.to(ScalarType.Int64).data<long>().ToArray());
        Assert.Equal(c.GetProperty("w_scale").GetSingle(), q.WeightScale);

        var x = OracleVectors.Tensor(c.GetProperty("x"), c.GetProperty("x_shape"));
        var (aScale, zeroPoint) = QuantizationRules.ChooseActivationQParams(x.min().item<float>(), x.max().item<float>());
        Assert.Equal(c.GetProperty("a_scale").GetSingle(), aScale);
        Assert.Equal(c.GetProperty("a_zero_point").GetInt32(), zeroPoint);

        var y = q.call(x);
        Assert.Equal(OracleVectors.Longs(c.GetProperty("x_shape"))[..^1].Append(linear.out_features), y.shape);
        AssertCloseToFloatRounding(OracleVectors.Floats(c.GetProperty("y")), y.data<float>().ToArray(), id);
    }

    [Fact]
    public void TorchOpsPath_ForHugeInputs_GivesTheSameResults()
    {
        using var scope = NewDisposeScope();
        foreach (var id in new[] { "64x32_b16", "ties_zp33", "33x9_b7_nobias" })
        {
            var c = Vectors.GetProperty("linear").EnumerateArray().Single(e => OracleVectors.Id(e) == id);
            var q = (DynamicQuantizedLinear)Quantize.Dynamic(LinearFrom(c), QuantizeMode.DynamicInt8);
            var x = OracleVectors.Tensor(c.GetProperty("x"), c.GetProperty("x_shape"));
            var managed = q.call(x);
            Tensor viaTorch;
            try
            {
                DynamicQuantizedLinear.UseManagedKernels = false;
                viaTorch = q.call(x);
            }
            finally
            {
                DynamicQuantizedLinear.UseManagedKernels = true;
            }
            Assert.True(viaTorch.equal(managed).all().item<bool>(), id);
            AssertCloseToFloatRounding(OracleVectors.Floats(c.GetProperty("y")), viaTorch.data<float>().ToArray(), id);
        }
    }

    public static IEnumerable<object[]> Kernels() =>
        new[] { Int8Kernel.Scalar, Int8Kernel.Avx2, Int8Kernel.AvxVnni }.Where(Int8Gemm.IsSupported).Select(k => new object[] { k.ToString() });

    [Theory]
    [MemberData(nameof(Kernels))]
    public void EveryInt8Kernel_IsBitIdenticalToTheIntMmPath_AndMatchesPyTorch(string kernelName)
    {
        var kernel = Enum.Parse<Int8Kernel>(kernelName);
        using var scope = NewDisposeScope();
        foreach (var c in Vectors.GetProperty("linear").EnumerateArray())
        {
            string id = OracleVectors.Id(c);
            var q = (DynamicQuantizedLinear)Quantize.Dynamic(LinearFrom(c), QuantizeMode.DynamicInt8);
            var x = OracleVectors.Tensor(c.GetProperty("x"), c.GetProperty("x_shape"));
            Tensor viaIntMm, viaKernel;
            try
            {
                Int8Gemm.Forced = Int8Kernel.Torch;
                viaIntMm = q.call(x);
                Int8Gemm.Forced = kernel;
                viaKernel = q.call(x);
            }
            finally
            {
                Int8Gemm.Forced = null;
            }
            Assert.True(viaKernel.equal(viaIntMm).all().item<bool>(), $"{kernel}, {id}");
            AssertCloseToFloatRounding(OracleVectors.Floats(c.GetProperty("y")), viaKernel.data<float>().ToArray(), $"{kernel}, {id}");
        }
    }

    [Fact]
    public void ThreeDimensionalAndNonContiguousInputs_GiveTheRowsOfTheTwoDimensionalCall()
    {
        // A contiguous input is read in place whatever its shape; a non-contiguous one is copied first.
        using var scope = NewDisposeScope();
        manual_seed(5);
        var q = (DynamicQuantizedLinear)Quantize.Dynamic(nn.Linear(40, 7), QuantizeMode.DynamicInt8);
        var x = randn(2, 3, 40);
        var flat = q.call(x.reshape(6, 40));
        var threeD = q.call(x);
        Assert.Equal(new long[] { 2, 3, 7 }, threeD.shape);
        Assert.True(threeD.reshape(6, 7).equal(flat).all().item<bool>());
        var transposed = x.reshape(6, 40).t().contiguous().t(); // the same values, column-major
        Assert.False(transposed.is_contiguous());
        Assert.True(q.call(transposed).equal(flat).all().item<bool>());
    }

    [Fact]
    public void WeightLoadedInPlace_IsWhatTheNextCallUses()
    {
        // The kernel reads the stored int8 buffer directly (no packed copy), so a load into it (TorchSharp's load,
        // copy_) cannot leave a stale weight behind.
        using var scope = NewDisposeScope();
        manual_seed(3);
        var first = (DynamicQuantizedLinear)Quantize.Dynamic(nn.Linear(70, 9), QuantizeMode.DynamicInt8);
        var second = (DynamicQuantizedLinear)Quantize.Dynamic(nn.Linear(70, 9), QuantizeMode.DynamicInt8);
        var x = randn(6, 70);
        var before = first.call(x);
        using (no_grad())
            foreach (var (name, tensor) in first.state_dict())
                tensor.copy_(second.state_dict()[name]);
        var after = first.call(x);
        Assert.False(after.equal(before).all().item<bool>());
        Assert.True(after.equal(second.call(x)).all().item<bool>());
    }

    [Fact]
    public void SemanticsTable_Q1_Q2_Q3()
    {
        using var scope = NewDisposeScope();
        var linear = nn.Linear(2, 2);
        using (no_grad())
        {
            linear.weight.copy_(tensor(new[] { 0.5f, -1f, 0.25f, 0.75f }).reshape(2, 2));
            linear.bias!.copy_(tensor(new[] { 0.1f, -0.2f }));
        }
        var q = (DynamicQuantizedLinear)Quantize.Dynamic(linear, QuantizeMode.DynamicInt8);
        Assert.Equal(0.007843137718737125f, q.WeightScale);
        Assert.Equal(new long[] { 64, -127, 32, 96 }, q.weight.to(ScalarType.Int64).data<long>().ToArray()); // -1 does not reach -128

        Assert.Equal((0.023622047156095505f, 85), QuantizationRules.ChooseActivationQParams(-2f, 1f));
        var y = q.call(tensor(new[] { 1f, -2f }).reshape(1, 2)).data<float>().ToArray();
        AssertCloseToFloatRounding(new[] { 2.598008394f, -1.462806940f }, y, "Q2");

        using (no_grad()) linear.weight.zero_();
        var zero = (DynamicQuantizedLinear)Quantize.Dynamic(linear, QuantizeMode.DynamicInt8);
        Assert.Equal(1.1920929e-07f, zero.WeightScale);
        Assert.True(zero.weight.eq(0).all().item<bool>());
    }

    [Fact]
    public void QuantizedMlp_EqualsPyTorchsQuantizedMlp()
    {
        using var scope = NewDisposeScope();
        var mlp = Vectors.GetProperty("mlp");
        var layers = mlp.GetProperty("layers").EnumerateArray().Select(l =>
        {
            var linear = nn.Linear(l.GetProperty("in").GetInt64(), l.GetProperty("out").GetInt64());
            using (no_grad())
            {
                linear.weight.copy_(tensor(OracleVectors.Floats(l.GetProperty("weight"))).reshape(linear.out_features, linear.in_features));
                linear.bias!.copy_(tensor(OracleVectors.Floats(l.GetProperty("bias"))));
            }
            return linear;
        }).ToArray();
        var model = nn.Sequential(("0", layers[0]), ("1", nn.ReLU()), ("2", layers[1]), ("3", nn.ReLU()), ("4", layers[2]));
        var quantized = Quantize.Dynamic(model, QuantizeMode.DynamicInt8);

        Assert.IsType<Sequential>(quantized);
        Assert.Equal(3, Quantize.QuantizedLayers(quantized).Count());
        var y = quantized.call(OracleVectors.Tensor(mlp.GetProperty("x"), mlp.GetProperty("x_shape")));
        AssertCloseToFloatRounding(OracleVectors.Floats(mlp.GetProperty("y")), y.data<float>().ToArray(), "mlp");
    }

    [Fact]
    public void Float16_SaturatesAndRoundsTheWeight_ComputesInFloat32()
    {
        using var scope = NewDisposeScope();
        var c = Vectors.GetProperty("float16")[0];
        var linear = LinearFrom(c);
        var q = (DynamicQuantizedLinear)Quantize.Dynamic(linear, QuantizeMode.Float16);
        Assert.Equal(ScalarType.Float16, q.weight.dtype);
        Assert.Equal(OracleVectors.Floats(c.GetProperty("weight_fp16")), q.weight.to(ScalarType.Float32).data<float>().ToArray());
        var y = q.call(OracleVectors.Tensor(c.GetProperty("x"), c.GetProperty("x_shape")));
        AssertCloseToFloatRounding(OracleVectors.Floats(c.GetProperty("y")), y.data<float>().ToArray(), "fp16");
    }

    [Fact]
    public void WeightOnlyInt8_ComputesWithTheDequantisedWeight()
    {
        using var scope = NewDisposeScope();
        manual_seed(21);
        var linear = nn.Linear(24, 6);
        var q = (DynamicQuantizedLinear)Quantize.Dynamic(linear, QuantizeMode.WeightOnlyInt8);
        var dynamicInt8 = (DynamicQuantizedLinear)Quantize.Dynamic(linear, QuantizeMode.DynamicInt8);
        Assert.True(q.weight.equal(dynamicInt8.weight).all().item<bool>()); // the same int8 weight
        var x = randn(5, 24);
        var expected = nn.functional.linear(x, q.weight.to(ScalarType.Float32) * q.WeightScale, linear.bias);
        Assert.True(q.call(x).allclose(expected, rtol: 0, atol: 0));
    }

    [Fact]
    public void Dynamic_LeavesTheOriginalUntouched_AndTheRandomStream()
    {
        using var scope = NewDisposeScope();
        manual_seed(22);
        var model = nn.Sequential(("fc1", nn.Linear(8, 16)), ("act", nn.ReLU()), ("drop", nn.Dropout(0.5)), ("fc2", nn.Linear(16, 3)));
        model.train();
        var before = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());

        manual_seed(99);
        var quantized = Quantize.Dynamic(model, QuantizeMode.DynamicInt8);
        var afterQuantize = rand(3);
        manual_seed(99);
        Assert.True(rand(3).equal(afterQuantize).all().item<bool>(), "Quantize.Dynamic consumed the global random stream");

        Assert.False(quantized.training);
        Assert.True(model.training);
        Assert.IsType<Linear>(model.named_children().First().module);
        foreach (var (key, value) in model.state_dict())
            Assert.True(value.equal(before[key]).all().item<bool>(), key);
        Assert.Empty(quantized.parameters());
        Assert.Equal(new[] { "fc1.weight", "fc1.weight_scale", "fc1.bias", "fc1.quantize_mode", "fc2.weight", "fc2.weight_scale", "fc2.bias", "fc2.quantize_mode" },
            quantized.state_dict().Keys);

        // Separate tensors: disposing the quantised model leaves the original working.
        quantized.Dispose();
        model.eval();
        Assert.Equal(new long[] { 2, 3 }, model.call(randn(2, 8)).shape);
    }

    [Fact]
    public void GeneratedModels_AreRebuilt_WithTheirLayersQuantised()
    {
        using var scope = NewDisposeScope();
        manual_seed(23);
        var stack = new Stack(); // two composed Block models, then a Linear head
        stack.eval();
        var quantized = Quantize.Dynamic(stack, QuantizeMode.DynamicInt8);

        Assert.Equal(new[] { "First.Down", "First.Up", "Head", "Second.Down", "Second.Up" }, Quantize.QuantizedLayers(quantized).Select(l => l.Name).OrderBy(n => n, StringComparer.Ordinal));
        Assert.Equal(stack.named_children().Select(c => c.name), quantized.named_children().Select(c => c.name));
        Assert.IsType<Stack>(stack); // the original keeps its float layers
        Assert.IsType<Linear>(stack.Head);

        var x = randn(4, 10, 12);
        var y = quantized.call(x);
        var reference = stack.forward(x);
        Assert.Equal(reference.shape, y.shape);
        // int8 error: small against the output's spread, and not zero (the layers really changed).
        double error = (y - reference).abs().max().item<float>();
        Assert.InRange(error, 1e-7, 0.05 * reference.abs().max().item<float>());

        // The same layers run by hand give exactly the rebuilt model's output.
        var children = quantized.named_children().ToDictionary(c => c.name, c => (nn.Module<Tensor, Tensor>)c.module);
        var manual = children["Head"].call(children["Flat"].call(children["Second"].call(children["First"].call(x))));
        Assert.True(manual.equal(y).all().item<bool>());

        // Saved and loaded through a fresh float model of the same class.
        string path = Path.Combine(Path.GetTempPath(), $"stack-{Guid.NewGuid():N}.dat");
        try
        {
            Quantize.Save(quantized, path);
            var loaded = Quantize.Load(new Stack(), path);
            Assert.True(loaded.call(x).equal(y).all().item<bool>());
            Assert.DoesNotContain(loaded.state_dict().Keys, k => k.Contains("__"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void GeneratedModelWithIntegerInput_AndConvolutions_Quantise()
    {
        using var scope = NewDisposeScope();
        manual_seed(24);
        var tokens = new TokenZoo();
        var qTokens = Quantize.Dynamic(tokens, QuantizeMode.DynamicInt8);
        var ids = randint(0, 50, new long[] { 2, 5 }, dtype: ScalarType.Int64);
        tokens.eval();
        Assert.Equal(tokens.forward(ids).shape, qTokens.call(ids).shape);
        Assert.Equal(2, Quantize.QuantizedLayers(qTokens).Count());

        var conv = new Conv2dZoo();
        var qConv = Quantize.Dynamic(conv, QuantizeMode.Float16);
        var image = randn(2, 3, 33, 29);
        conv.eval();
        Assert.True(qConv.call(image).allclose(conv.forward(image), rtol: 1e-2, atol: 1e-3));
    }

    [Fact]
    public void TheMainJobsModels_Quantise()
    {
        using var scope = NewDisposeScope();
        manual_seed(28);
        var cnn = new Digits.DigitsCnn();
        cnn.eval();
        var qCnn = Quantize.Dynamic(cnn, QuantizeMode.DynamicInt8);
        var images = rand(8, 1, 8, 8);
        var reference = cnn.forward(images);
        var y = qCnn.call(images);
        Assert.Equal(reference.shape, y.shape);
        Assert.NotEmpty(Quantize.QuantizedLayers(qCnn));
        Assert.True((y - reference).abs().max().item<float>() < 0.05 * reference.abs().max().item<float>() + 1e-3);

        var mlp = new Digits.DigitsMlp();
        Assert.Equal(3, Quantize.QuantizedLayers(Quantize.Dynamic(mlp, QuantizeMode.DynamicInt8)).Count());
    }

    [Fact]
    public void HandWrittenForward_WithLinearFields_IsRejectedWithTheReason()
    {
        using var scope = NewDisposeScope();
        var error = Assert.Throws<NotSupportedException>(() => Quantize.Dynamic(new Residual(), QuantizeMode.DynamicInt8));
        Assert.Contains("hand-written forward", error.Message);
        Assert.Contains("Module<Tensor, Tensor>", error.Message);
    }

    [Fact]
    public void HandWrittenForward_WithModuleTypedFields_GetsItsFieldsReplaced()
    {
        using var scope = NewDisposeScope();
        manual_seed(25);
        var model = new FlexibleResidual();
        model.eval();
        var quantized = Assert.IsType<FlexibleResidual>(Quantize.Dynamic(model, QuantizeMode.DynamicInt8));
        Assert.IsType<DynamicQuantizedLinear>(quantized.Inner);
        Assert.IsType<Linear>(model.Inner);
        Assert.Equal(new[] { "inner", "act" }, quantized.named_children().Select(c => c.name));
        var x = randn(3, 6);
        Assert.True(quantized.call(x).allclose(model.call(x), rtol: 0.05, atol: 0.05));
        Assert.False(quantized.call(x).equal(model.call(x)).all().item<bool>());
    }

    [Fact]
    public void PrunedModel_MustRemoveTheMasksFirst()
    {
        using var scope = NewDisposeScope();
        var model = nn.Sequential(("fc", nn.Linear(4, 4)));
        Prune.L1Unstructured(model.named_children().First().module, "weight", 0.5);
        Assert.Contains("Prune.Remove", Assert.Throws<InvalidOperationException>(() => Quantize.Dynamic(model, QuantizeMode.DynamicInt8)).Message);
        Prune.Remove(model.named_children().First().module, "weight");
        var q = (DynamicQuantizedLinear)((Sequential)Quantize.Dynamic(model, QuantizeMode.DynamicInt8)).named_children().First().module;
        Assert.Equal(8, (int)q.weight.eq(0).sum().item<long>()); // pruned zeros stay exact zeros in int8
    }

    [Fact]
    public void SaveAndLoad_RoundTripsInt8Weights_FourTimesSmaller()
    {
        using var scope = NewDisposeScope();
        manual_seed(26);
        nn.Module<Tensor, Tensor> Mlp() => nn.Sequential(("fc1", nn.Linear(256, 256)), ("act", nn.ReLU()), ("fc2", nn.Linear(256, 64)));
        var model = Mlp();
        var quantized = Quantize.Dynamic(model, QuantizeMode.DynamicInt8);
        string dir = Path.Combine(Path.GetTempPath(), $"quant-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string floatPath = Path.Combine(dir, "float.dat"), int8Path = Path.Combine(dir, "int8.dat");
            model.save(floatPath);
            Quantize.Save(quantized, int8Path);
            double ratio = (double)new FileInfo(int8Path).Length / new FileInfo(floatPath).Length;
            Assert.InRange(ratio, 0.24, 0.27);

            var x = randn(5, 256);
            var loaded = Quantize.Load(Mlp(), int8Path); // a fresh float architecture with other weights
            Assert.True(loaded.call(x).equal(quantized.call(x)).all().item<bool>());

            // TorchSharp's own load works into a quantised model of the same architecture.
            var other = Quantize.Dynamic(Mlp(), QuantizeMode.DynamicInt8);
            other.load(int8Path);
            Assert.True(other.call(x).equal(quantized.call(x)).all().item<bool>());

            // Loading int8 weights into a float model says what to do.
            var intoFloat = Assert.Throws<InvalidOperationException>(() => Quantize.LoadInto(Mlp(), int8Path));
            Assert.Contains("'fc1' is a float Linear", intoFloat.Message);
            Assert.Contains("Quantize.Load(model, path)", intoFloat.Message);
            var floatFile = Assert.Throws<InvalidDataException>(() => Quantize.Load(Mlp(), floatPath));
            Assert.Contains("holds a float model", floatFile.Message);
            var otherMode = Quantize.Dynamic(Mlp(), QuantizeMode.Float16);
            Assert.Contains("is Float16", Assert.Throws<InvalidOperationException>(() => Quantize.LoadInto(otherMode, int8Path)).Message);
            var otherShape = Quantize.Dynamic(nn.Sequential(("fc1", nn.Linear(256, 128)), ("act", nn.ReLU()), ("fc2", nn.Linear(128, 64))), QuantizeMode.DynamicInt8);
            Assert.Contains("'fc1.weight' is Int8 [256, 256] in the file", Assert.Throws<InvalidDataException>(() => Quantize.LoadInto(otherShape, int8Path)).Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Input_OfAnyRank_AndEmpty_AndWrongWidth()
    {
        using var scope = NewDisposeScope();
        manual_seed(27);
        var q = (DynamicQuantizedLinear)Quantize.Dynamic(nn.Linear(6, 2), QuantizeMode.DynamicInt8);
        var x = randn(2, 3, 6);
        var flat = q.call(x.reshape(6, 6)).reshape(2, 3, 2);
        Assert.True(q.call(x).equal(flat).all().item<bool>()); // one min/max over the whole input, like PyTorch
        Assert.Equal(new long[] { 0, 2 }, q.call(zeros(0, 6)).shape);
        Assert.Contains("takes 6 features", Assert.Throws<ArgumentException>(() => q.call(randn(2, 5))).Message);
    }
}

/// <summary>A generated model whose hand-written forward adds a residual: it cannot be rebuilt as a chain.</summary>
#pragma warning disable MD0013 // the hand-written forward is the point of this model
[Model(Input = "B, 6")]
public partial class Residual
{
    [Linear(6, 6)] public partial Linear Inner { get; }
    [ReLU]         public partial ReLU Act { get; }

    /// <summary>x + relu(inner(x)).</summary>
    public override Tensor forward(Tensor input) => input + Act.call(Inner.call(input));
}

/// <summary>A hand-written module that holds its layers as Module&lt;Tensor, Tensor&gt;, so they can be swapped.</summary>
public sealed class FlexibleResidual : nn.Module<Tensor, Tensor>
{
    private nn.Module<Tensor, Tensor> inner;
    private readonly nn.Module<Tensor, Tensor> act;

    /// <summary>Creates the module.</summary>
    public FlexibleResidual() : base(nameof(FlexibleResidual))
    {
        inner = nn.Linear(6, 6);
        act = nn.ReLU();
        RegisterComponents();
    }

    /// <summary>The inner layer.</summary>
    public nn.Module<Tensor, Tensor> Inner => inner;

    /// <inheritdoc/>
    public override Tensor forward(Tensor input) => input + act.call(inner.call(input));
}
