using System.Reflection;
using Google.Protobuf;
using ModelDsl.Runtime.Inference;
using ModelDsl.Runtime.Onnx.Proto;

namespace ModelDsl.Runtime.Onnx;

/// <summary>How an exported DynamicInt8 Linear quantises its input (docs/inference.md#onnx).</summary>
public enum OnnxInt8Activations
{
    /// <summary>
    /// Our numerics (PyTorch's <c>quantize_dynamic</c> with <c>reduce_range</c>): the per-call scale and zero point
    /// for uint8 0..127 are computed by ONNX ops (ReduceMin/ReduceMax, the scale in float64) and the input quantised
    /// with Mul/Add/Round/Clip, then <c>MatMulInteger</c>: the same int32 sums as our kernel, so the same predictions.
    /// </summary>
    ReduceRange,

    /// <summary>
    /// ONNX's own <c>DynamicQuantizeLinear</c> (uint8 0..255, one fused op that ONNX Runtime runs fastest): a grid
    /// twice as fine as ours, so outputs differ from ours by quantisation noise.
    /// </summary>
    DynamicQuantizeLinear,
}

/// <summary>
/// Writes a generated model as an ONNX model (opset <see cref="Opset"/>) for ONNX Runtime and other ONNX engines,
/// from the layers its slots hold now — no tracing: each slot's module (its kind, arguments and weights) maps to
/// ONNX nodes. Float, pruned (the mask folded into plain weights), structurally cut and int8 models
/// (<c>DynamicQuantizeLinear</c> + <c>MatMulInteger</c>) export alike. See docs/inference.md#onnx.
/// </summary>
public static class OnnxExport
{
    /// <summary>The ONNX operator set the files use.</summary>
    public const int Opset = 17;

    /// <summary>The ONNX IR version written (8: the one that opset 17 came with).</summary>
    public const int IrVersion = 8;

    /// <summary>The graph input's name.</summary>
    public const string InputName = "input";

    /// <summary>The graph output's name.</summary>
    public const string OutputName = "output";

    /// <summary>The symbolic name of the batch dimension (dimension 0 of the input and the output).</summary>
    public const string BatchDim = "batch";

    /// <summary>
    /// Writes <paramref name="model"/> to <paramref name="path"/> (atomically) as an ONNX model whose input is
    /// <paramref name="signature"/>'s (generated models: <c>Model.Signature</c>).
    /// </summary>
    /// <exception cref="NotSupportedException">A layer kind without an ONNX mapping, or a hand-written forward; the message names the layer.</exception>
    /// <param name="model">A generated model (its forward the generated one), in the state to export (eval mode is not needed: dropout is left out, batch norm uses its running statistics).</param>
    /// <param name="signature">The model's input: <c>Model.Signature</c>.</param>
    /// <param name="path">The .onnx file to write.</param>
    /// <param name="int8Activations">How DynamicInt8 layers quantise their input: our numerics (the default) or ONNX's DynamicQuantizeLinear.</param>
    public static void Save(nn.Module<Tensor, Tensor> model, ModelSignature signature, string path, OnnxInt8Activations int8Activations = OnnxInt8Activations.ReduceRange)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        byte[] bytes = ToBytes(model, signature, int8Activations);
        ModelFiles.AtomicWrite(path, stream => stream.Write(bytes));
    }

    /// <summary>The ONNX model of <paramref name="model"/> as bytes (what <see cref="Save"/> writes).</summary>
    /// <exception cref="NotSupportedException">A layer kind without an ONNX mapping, or a hand-written forward.</exception>
    public static byte[] ToBytes(nn.Module<Tensor, Tensor> model, ModelSignature signature, OnnxInt8Activations int8Activations = OnnxInt8Activations.ReduceRange)
    {
        var proto = Build(model, signature, int8Activations);
        // Protobuf messages end at 2 GiB; larger models need ONNX's external-data form.
        long bytes = proto.CalculateSize();
        if (bytes >= int.MaxValue)
            throw new NotSupportedException($"{signature.ModelName} is {bytes:N0} bytes as ONNX, over protobuf's 2 GiB; the exporter does not write ONNX's external-data form");
        return proto.ToByteArray();
    }

    internal static ModelProto Build(nn.Module<Tensor, Tensor> model, ModelSignature signature, OnnxInt8Activations int8Activations = OnnxInt8Activations.ReduceRange)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(signature);
        if (model is not ILayerHost host)
            throw new NotSupportedException($"ONNX export takes a generated [Model] ({signature.ModelName}); {model.GetType().Name} is not one (it has no layer slots to read)");
        if (!host.ForwardIsGenerated)
            throw new NotSupportedException($"{signature.ModelName} has a hand-written forward; ONNX export follows the generated forward (its layers in declaration order) only");

        var g = new OnnxGraph(int8Activations);
        // One graph input per model input: "input", or (several inputs) each declared input by its name and shape.
        var declared = host.Summary.IsMultiInput
            ? host.Summary.Inputs.Select(i => (i.Name, Signature: new ModelSignature(signature.ModelName, i.Shape, signature.InputIsInteger))).ToArray()
            : new[] { (Name: InputName, Signature: signature) };
        if (declared.Any(i => i.Name == OutputName))
            throw new NotSupportedException($"{signature.ModelName} has an input named '{OutputName}', the name of the ONNX graph's output; rename the input");
        foreach (var input in declared) g.Reserve(input.Name);
        g.Reserve(OutputName); // before the layers, so a layer named 'output' gets another name
        var inputType = signature.InputIsInteger ? TensorProto.Types.DataType.Int64 : TensorProto.Types.DataType.Float;
        var values = new Dictionary<string, OnnxValue>(StringComparer.Ordinal);
        foreach (var (name, inputSignature) in declared)
        {
            var inputShape = Enumerable.Range(0, inputSignature.Rank).Select(i =>
            {
                var (size, symbol) = inputSignature.Dim(i);
                return i == 0 ? new OnnxDim(-1, BatchDim) : symbol is not null ? new OnnxDim(-1, symbol) : OnnxDim.Of(size);
            }).ToArray();
            g.Proto.Input.Add(OnnxGraph.ValueInfo(name, inputType, inputShape));
            values[host.Summary.IsMultiInput ? name : ModelSummary.InputName] = new OnnxValue(name, inputShape);
        }

        OnnxValue x;
        using (NewDisposeScope()) // the temporaries of the mapping (folded masks, reordered gates)
        using (no_grad())
        {
            x = OnnxLayers.Layers(g, "", host, values);
        }
        var last = new NodeProto { OpType = "Identity", Name = OutputName + "/Identity" };
        last.Input.Add(x.Name);
        last.Output.Add(OutputName);
        g.Proto.Node.Add(last);
        g.Proto.Output.Add(OnnxGraph.ValueInfo(OutputName, TensorProto.Types.DataType.Float, x.Shape));
        g.Proto.Name = signature.ModelName;

        var proto = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "ModelDsl",
            ProducerVersion = typeof(OnnxExport).Assembly.GetName().Version?.ToString(3) ?? "0",
            Graph = g.Proto,
            DocString = $"{signature.ModelName}: input {signature.Input}, output {signature.Output}",
        };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        proto.MetadataProps.Add(new StringStringEntryProto { Key = "modeldsl.model", Value = signature.ModelName });
        proto.MetadataProps.Add(new StringStringEntryProto { Key = "modeldsl.output", Value = signature.Output.ToString() });
        return proto;
    }
}
