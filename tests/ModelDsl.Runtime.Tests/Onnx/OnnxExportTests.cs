using Google.Protobuf;
using ModelDsl.Runtime.Inference;
using ModelDsl.Runtime.Onnx;
using ModelDsl.Runtime.Onnx.Proto;
using ModelDsl.Runtime.Pruning;
using ModelDsl.Runtime.Quantization;
using ModelDsl.Runtime.Tests.Oracle;
using ModelDsl.Runtime.Tests.Recurrent;
using System.IO;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests.Onnx;

/// <summary>
/// Models exported by <see cref="OnnxExport"/> and run in ONNX Runtime: the outputs agree with our runtime's within
/// 1e-4 (float), the graph has opset 17, named inputs/outputs and a symbolic batch (and sequence) dimension, and
/// kinds without a mapping are refused by name.
/// </summary>
[Collection(GlobalTorchStateCollection.Name)]
public sealed class OnnxExportTests
{
    private const float Tolerance = 1e-4f;

    /// <summary>Fresh weights with non-trivial norm statistics and affine parameters (the defaults 0/1 would hide a mix-up).</summary>
    private static T Randomised<T>(T model) where T : nn.Module
    {
        using var noGrad = no_grad();
        foreach (var module in model.modules().OfType<BatchNorm>())
        {
            module.running_mean!.normal_(0, 0.5);
            module.running_var!.uniform_(0.5, 2.0);
        }
        foreach (var p in model.parameters().Where(p => p.dim() == 1))
            p.add_(randn_like(p) * 0.1);
        model.eval();
        return model;
    }

    private static (Tensor Ours, Tensor Ort) RunBoth(nn.Module<Tensor, Tensor> model, ModelSignature signature, Tensor input)
    {
        byte[] bytes = OnnxExport.ToBytes(model, signature);
        using var ort = new OrtRunner(bytes);
        using var noGrad = no_grad();
        return (model.call(input), ort.Run(input));
    }

    private static void AssertClose(Tensor expected, Tensor actual, float tolerance = Tolerance)
    {
        Assert.Equal(expected.shape, actual.shape);
        float worst = (expected - actual).abs().max().item<float>();
        Assert.True(worst <= tolerance, $"max |ours - ORT| = {worst} > {tolerance}");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    public void DigitsCnn_Float_MatchesOrt(int batch)
    {
        manual_seed(1);
        using var model = Randomised(new Digits.DigitsCnn());
        var (ours, ort) = RunBoth(model, Digits.DigitsCnn.Signature, rand(batch, 1, 8, 8));
        AssertClose(ours, ort);
    }

    [Fact]
    public void DigitsMlp_Float_MatchesOrt()
    {
        manual_seed(2);
        using var model = Randomised(new Digits.DigitsMlp());
        var (ours, ort) = RunBoth(model, Digits.DigitsMlp.Signature, rand(5, 64));
        AssertClose(ours, ort);
    }

    [Theory]
    [InlineData(3, 5)]
    [InlineData(2, 8)]
    public void GptShapedModel_CausalAndNonCausalBlocks_TiedHead_MatchesOrt(int batch, int length)
    {
        manual_seed(3);
        using var model = Randomised(new GptZoo());
        var (ours, ort) = RunBoth(model, GptZoo.Signature, randint(0, 50, new long[] { batch, length }));
        AssertClose(ours, ort);
    }

    [Fact]
    public void GptShapedModel_TiedWeight_IsStoredOnce()
    {
        using var model = new GptZoo();
        var proto = OnnxExport.Build(model, GptZoo.Signature);
        Assert.Contains(proto.Graph.Initializer, i => i.Name == "Embed.weight");
        Assert.DoesNotContain(proto.Graph.Initializer, i => i.Name == "Head.weight");
    }

    [Fact]
    public void LayerZoos_MatchOrt()
    {
        manual_seed(4);
        foreach (var (model, signature, input) in new (nn.Module<Tensor, Tensor>, ModelSignature, Tensor)[]
                 {
                     (Randomised(new DenseZoo()), DenseZoo.Signature, randn(6, 20)),
                     (Randomised(new Conv2dZoo()), Conv2dZoo.Signature, randn(2, 3, 33, 29)),
                     (Randomised(new Conv1dZoo()), Conv1dZoo.Signature, randn(3, 4, 30)),
                     (Randomised(new RectZoo()), RectZoo.Signature, randn(2, 2, 17, 23)),
                     (Randomised(new Stack()), Stack.Signature, randn(4, 10, 12)),
                 })
        {
            using (model)
            {
                var (ours, ort) = RunBoth(model, signature, input);
                AssertClose(ours, ort);
            }
        }
    }

    [Fact]
    public void Graph_HasOpset17_NamedInputAndOutput_AndSymbolicBatchAndSequenceDims()
    {
        using var cnn = new Digits.DigitsCnn();
        using var ort = new OrtRunner(OnnxExport.ToBytes(cnn, Digits.DigitsCnn.Signature));
        var input = ort.Session.InputMetadata.Single();
        Assert.Equal("input", input.Key);
        Assert.Equal(new[] { -1, 1, 8, 8 }, input.Value.Dimensions);
        Assert.Equal("batch", input.Value.SymbolicDimensions[0]);
        var output = ort.Session.OutputMetadata.Single();
        Assert.Equal("output", output.Key);
        Assert.Equal(new[] { -1, 10 }, output.Value.Dimensions);
        Assert.Equal("batch", output.Value.SymbolicDimensions[0]);

        using var gpt = new GptZoo();
        var proto = OnnxExport.Build(gpt, GptZoo.Signature);
        Assert.Equal(17, proto.OpsetImport.Single(o => o.Domain == "").Version);
        Assert.Equal(new[] { "batch", "T" }, proto.Graph.Input.Single().Type.TensorType.Shape.Dim.Select(d => d.DimParam));
        Assert.Equal((int)TensorProto.Types.DataType.Int64, proto.Graph.Input.Single().Type.TensorType.ElemType);
        var outDims = proto.Graph.Output.Single().Type.TensorType.Shape.Dim;
        Assert.Equal(("batch", "T", 50L), (outDims[0].DimParam, outDims[1].DimParam, outDims[2].DimValue));
        Assert.Contains(proto.MetadataProps, p => p.Key == "modeldsl.model" && p.Value == "GptZoo");
    }

    [Fact]
    public void PrunedModel_ExportsTheFoldedWeights_AndMatchesOrt()
    {
        manual_seed(5);
        using var model = Randomised(new Digits.DigitsMlp());
        Prune.L1Unstructured(model.Hidden1, "weight", PruneAmount.Of(0.6));
        Prune.L1Unstructured(model.Hidden2, "bias", PruneAmount.Of(0.5));
        // An optimiser step moves weight_orig and bias_orig; the modules' tensors catch up only at their next forward,
        // so the export must fold mask · orig itself.
        using (no_grad())
        {
            model.Hidden1.named_parameters(recurse: false).Single(p => p.name == "weight_orig").parameter.add_(0.05);
            model.Hidden2.named_parameters(recurse: false).Single(p => p.name == "bias_orig").parameter.add_(0.05);
        }
        var proto = OnnxExport.Build(model, Digits.DigitsMlp.Signature);
        Assert.DoesNotContain(proto.Graph.Initializer, i => i.Name.EndsWith("_orig", StringComparison.Ordinal) || i.Name.EndsWith("_mask", StringComparison.Ordinal));
        var weight = proto.Graph.Initializer.Single(i => i.Name == "Hidden1.weight");
        var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(weight.RawData.Span).ToArray();
        Assert.Equal((int)Math.Round(0.6 * 512 * 64), values.Count(v => v == 0f));

        var x = rand(9, 64);
        using var ort = new OrtRunner(proto.ToByteArray());
        using var noGrad = no_grad();
        AssertClose(model.call(x), ort.Run(x));
    }

    [Theory]
    [InlineData(QuantizeMode.WeightOnlyInt8)]
    [InlineData(QuantizeMode.Float16)]
    public void WeightOnlyQuantisedModels_MatchOrt(QuantizeMode mode)
    {
        manual_seed(6);
        using var source = Randomised(new GptZoo());
        using var model = Quantize.Dynamic(source, mode);
        var proto = OnnxExport.Build(model, GptZoo.Signature);
        Assert.Equal(mode == QuantizeMode.Float16 ? (int)TensorProto.Types.DataType.Float16 : (int)TensorProto.Types.DataType.Int8,
            proto.Graph.Initializer.Single(i => i.Name == "Blocks.0.in_proj.weight").DataType);
        var (ours, ort) = RunBoth(model, GptZoo.Signature, randint(0, 50, new long[] { 2, 6 }));
        AssertClose(ours, ort);
    }

    [Fact]
    public void DynamicInt8_ReduceRange_ComputesOurInt8Outputs()
    {
        manual_seed(7);
        using var source = Randomised(new Digits.DigitsMlp());
        using var model = Quantize.Dynamic(source, QuantizeMode.DynamicInt8);
        var proto = OnnxExport.Build(model, Digits.DigitsMlp.Signature);
        Assert.Equal(3, proto.Graph.Node.Count(n => n.OpType == "MatMulInteger"));
        Assert.DoesNotContain(proto.Graph.Node, n => n.OpType == "DynamicQuantizeLinear");
        Assert.Equal((int)TensorProto.Types.DataType.Int8, proto.Graph.Initializer.Single(i => i.Name == "Hidden1.weight").DataType);

        using var ort = new OrtRunner(proto.ToByteArray());
        using var noGrad = no_grad();
        // Inputs with a negative minimum (a zero point above 0), an all-positive one, and a single row.
        foreach (var x in new[] { randn(64, 64), rand(17, 64) * 3, randn(1, 64) })
        {
            var ours = model.call(x);
            var theirs = ort.Run(x);
            // The same int32 sums and scales: equal up to float rounding of the last multiply-add.
            AssertClose(ours, theirs, 1e-5f * Math.Max(1f, ours.abs().max().item<float>()));
            Assert.Equal(ours.argmax(1).data<long>().ToArray(), theirs.argmax(1).data<long>().ToArray());
        }
    }

    [Fact]
    public void DynamicInt8_GptShapedModel_ReduceRange_ComputesOurInt8Outputs()
    {
        manual_seed(8);
        using var source = Randomised(new GptZoo());
        using var model = Quantize.Dynamic(source, QuantizeMode.DynamicInt8);
        var proto = OnnxExport.Build(model, GptZoo.Signature);
        Assert.Equal(4 * 3 + 1, proto.Graph.Node.Count(n => n.OpType == "MatMulInteger"));   // 4 Linear slots × 3 Transformer layers, and the head
        using var ort = new OrtRunner(proto.ToByteArray());
        using var noGrad = no_grad();
        var x = randint(0, 50, new long[] { 3, 8 });
        var ours = model.call(x);
        AssertClose(ours, ort.Run(x), 1e-4f * Math.Max(1f, ours.abs().max().item<float>()));
    }

    [Fact]
    public void DynamicInt8_DynamicQuantizeLinear_UsesOnnxsFusedOp_AndStaysNearOurInt8()
    {
        manual_seed(7);
        using var source = Randomised(new Digits.DigitsMlp());
        using var model = Quantize.Dynamic(source, QuantizeMode.DynamicInt8);
        var proto = OnnxExport.Build(model, Digits.DigitsMlp.Signature, OnnxInt8Activations.DynamicQuantizeLinear);
        Assert.Equal(3, proto.Graph.Node.Count(n => n.OpType == "DynamicQuantizeLinear"));
        Assert.Equal(3, proto.Graph.Node.Count(n => n.OpType == "MatMulInteger"));

        var x = rand(64, 64);
        using var ort = new OrtRunner(proto.ToByteArray());
        using var noGrad = no_grad();
        var ours = model.call(x);
        var theirs = ort.Run(x);
        // Activations on 0..255 instead of our 0..127: the results agree to the int8 grid, not to float precision.
        var reference = source.call(x);
        float scale = reference.abs().max().item<float>();
        Assert.True((theirs - reference).abs().max().item<float>() <= 0.05f * scale);
        Assert.True((theirs - ours).abs().max().item<float>() <= 0.05f * scale);
        Assert.True((theirs - ours).abs().max().item<float>() > 1e-5f * scale); // not our numerics: a different grid
    }

    [Fact]
    public void RecurrentModels_LstmAndGru_StackedBidirectionalTimeFirst_MatchOrt()
    {
        manual_seed(9);
        foreach (var (model, signature, input) in new (nn.Module<Tensor, Tensor>, ModelSignature, Tensor)[]
                 {
                     (Randomised(new RecurrentZoo()), RecurrentZoo.Signature, randn(3, 5, 6)),
                     (Randomised(new WaveClassifier()), WaveClassifier.Signature, randn(4, 16, 1)),
                 })
        {
            using (model)
            {
                var (ours, ort) = RunBoth(model, signature, input);
                AssertClose(ours, ort);
            }
        }
    }

    [Fact]
    public void UnsupportedKind_IsRefusedByName()
    {
        using var wave = new WaveClassifier();
        using var int8 = Quantize.Dynamic(wave, QuantizeMode.DynamicInt8);
        var e = Assert.Throws<NotSupportedException>(() => OnnxExport.ToBytes(int8, WaveClassifier.Signature));
        Assert.StartsWith("ONNX export does not support layer 'Rnn' (LSTM, int8)", e.Message);

        using var tokens = new TokenZoo();
        e = Assert.Throws<NotSupportedException>(() => OnnxExport.ToBytes(tokens, TokenZoo.Signature));
        Assert.Contains("layer 'Tokens' flattens 0..1", e.Message);

        // A pruned LayerNorm: its mask is not folded (only Linear and convolutions), so it is refused, not exported stale.
        using var pruned = new TokenZoo();
        Prune.L1Unstructured(pruned.Ln, "weight", 0.5);
        e = Assert.Throws<NotSupportedException>(() => OnnxExport.ToBytes(pruned, TokenZoo.Signature));
        Assert.StartsWith("ONNX export folds pruning masks into Linear and convolution layers only; layer 'Ln' (LayerNorm) is pruned", e.Message);
    }

    [Fact]
    public void Cli_ExportOnnx_OfAnUnsupportedKind_IsOneLine_AndExitCode2()
    {
        var dir = Directory.CreateTempSubdirectory("modeldsl-onnx-").FullName;
        try
        {
            // The optimised model of WaveClassifier's plan: its LSTM in int8, which ONNX export does not map.
            string weights = Path.Combine(dir, "optimized.bin");
            using (var wave = new WaveClassifier())
            using (var int8 = Quantize.Dynamic(wave, QuantizeMode.DynamicInt8))
                Quantize.Save(int8, weights);
            string output = Path.Combine(dir, "wave.onnx");
            var run = CliCapture.Run(WaveClassifier.Run, "export", "--model", weights, "--format", "onnx", "--output", output);
            Assert.True(run.ExitCode == 2, run.ToString());
            Assert.StartsWith("error: cannot export WaveClassifier to ONNX: ONNX export does not support layer 'Rnn' (LSTM, int8)", run.Stderr);
            Assert.Single(run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.False(File.Exists(output));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
