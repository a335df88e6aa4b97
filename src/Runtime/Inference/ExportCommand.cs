using System.CommandLine;
using ModelDsl.Runtime.Training;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>
    /// <c>export --model PATH --format pytorch|safetensors|onnx --output FILE</c>: the model's state dict with PyTorch's
    /// names, for <c>torch.load</c> + <c>load_state_dict</c> on the equivalent PyTorch module, or the whole model as
    /// an ONNX graph for ONNX Runtime (docs/inference.md).
    /// </summary>
    internal static class ExportCommand
    {
        public const string Name = "export";

        public static Command Create<TModel>(TrainingPlan plan, Func<TModel> create) where TModel : nn.Module<Tensor, Tensor>
        {
            var command = new ModelCommandBuilder(plan, Name, $"Export a trained {plan.ModelName}'s weights for PyTorch (a state dict with PyTorch's parameter names), or the model as ONNX")
                .WithModel();
            var format = new Option<string?>("--format") { Description = "pytorch (torch.save's format), safetensors or onnx (default: from the output's extension: .pt/.pth, .safetensors or .onnx)", HelpName = "FORMAT" };
            format.AcceptOnlyFromAmong("pytorch", "safetensors", "onnx");
            command.Add(format);
            var output = command.Add(new Option<string>("--output") { Description = "The file to write", HelpName = "FILE", Required = true });
            var onnxInt8 = new Option<string?>("--onnx-int8") { Description = "onnx only: how int8 layers quantise their input: reduce-range (our numerics, the default) or dynamic-quantize-linear (ONNX's op: faster in ONNX Runtime, a finer grid)", HelpName = "FORM" };
            onnxInt8.AcceptOnlyFromAmong("reduce-range", "dynamic-quantize-linear");
            command.Add(onnxInt8);
            return command.Build((parsed, _) =>
            {
                string outputPath = parsed.GetValue(output)!;
                string? int8Form = parsed.GetValue(onnxInt8);
                if (parsed.GetValue(format) == "onnx" || (parsed.GetValue(format) is null && Path.GetExtension(outputPath).Equals(".onnx", StringComparison.OrdinalIgnoreCase)))
                    return ExportOnnx(plan, create, command.ModelPath(parsed, plan), outputPath,
                        int8Form == "dynamic-quantize-linear" ? Onnx.OnnxInt8Activations.DynamicQuantizeLinear : Onnx.OnnxInt8Activations.ReduceRange);
                if (int8Form is not null)
                    throw new TrainingException("--onnx-int8 applies to the onnx format only");
                var chosen = ModelLoader.ParseFormat(parsed.GetValue(format)) ?? FromExtension(outputPath)
                             ?? throw new TrainingException($"--format is needed: the extension of {outputPath} says neither .pt/.pth (pytorch), .safetensors nor .onnx");
                string modelPath = command.ModelPath(parsed, plan);
                using var net = ModelLoader.Load(modelPath, create, plan.ModelName);
                ModelLoader.Export(net, outputPath, chosen, plan.ModelName);
                int tensors = net.state_dict().Count;
                long parameters = net.parameters().Sum(p => p.numel());
                var quantized = Quantization.Quantize.QuantizedLayers(net).Select(q => $"{q.Name} ({q.Layer.Mode})")
                    .Concat(Quantization.Quantize.StaticLayers(net).Select(q => $"{q.Name} (StaticInt8: also weight_scales, input/output scales and zero points)")).ToList();
                Console.WriteLine($"exported {plan.ModelName} from {modelPath} to {outputPath} ({(chosen == ModelFileFormat.PyTorch ? "pytorch" : "safetensors")}: {tensors} tensors, {parameters:N0} parameters)" +
                    (quantized.Count == 0 ? "" : $"; quantised layers {string.Join(", ", quantized)} are stored as weight, weight_scale, bias and quantize_mode (weight · weight_scale is the float weight): ModelDsl loads the file back, PyTorch reads it as plain tensors"));
                return 0;
            });
        }

        /// <summary>The ONNX export: the loaded model's graph (docs/inference.md#onnx); a layer without an ONNX mapping is one line, exit 2.</summary>
        private static int ExportOnnx<TModel>(TrainingPlan plan, Func<TModel> create, string modelPath, string outputPath, Onnx.OnnxInt8Activations int8Activations) where TModel : nn.Module<Tensor, Tensor>
        {
            using var net = ModelLoader.Load(modelPath, create, plan.ModelName);
            try
            {
                Onnx.OnnxExport.Save(net, ModelSignature.FromPlan(plan), outputPath, int8Activations);
            }
            catch (NotSupportedException e)
            {
                throw new TrainingException($"cannot export {plan.ModelName} to ONNX: {e.Message}");
            }
            var layers = Quantization.Quantize.QuantizedLayers(net).ToList();
            var quantized = layers.Select(q => $"{q.Name} ({q.Layer.Mode})").ToList();
            bool dynamicInt8 = layers.Any(q => q.Layer.Mode == QuantizeMode.DynamicInt8); // only these quantise activations
            Console.WriteLine($"exported {plan.ModelName} from {modelPath} to {outputPath} (onnx, opset {Onnx.OnnxExport.Opset}: {InputNames(net)}, output '{Onnx.OnnxExport.OutputName}', batch dimension '{Onnx.OnnxExport.BatchDim}')" +
                (quantized.Count == 0 ? "" : $"; quantised layers {string.Join(", ", quantized)}")
                + (!dynamicInt8 ? "" : $", activations quantised {(int8Activations == Onnx.OnnxInt8Activations.ReduceRange ? "as ours (reduce_range)" : "by DynamicQuantizeLinear")}"));
            return 0;
        }

        /// <summary>The ONNX graph's inputs as the export line names them: <c>input 'input'</c>, or each of several inputs.</summary>
        private static string InputNames(nn.Module<Tensor, Tensor> model) =>
            model is ILayerHost { Summary: { IsMultiInput: true } summary }
                ? "inputs " + string.Join(", ", summary.Inputs.Select(i => $"'{i.Name}'"))
                : $"input '{Onnx.OnnxExport.InputName}'";

        private static ModelFileFormat? FromExtension(string path) => Path.GetExtension(path).ToLowerInvariant() switch
        {
            ".pt" or ".pth" => ModelFileFormat.PyTorch,
            ".safetensors" => ModelFileFormat.SafeTensors,
            _ => null,
        };
    }
}
