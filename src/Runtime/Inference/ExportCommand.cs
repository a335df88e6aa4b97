using System;
using System.CommandLine;
using System.IO;
using System.Linq;
using ModelDsl.Runtime.Training;
using static TorchSharp.torch;

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
            return command.Build((parsed, _) =>
            {
                string outputPath = parsed.GetValue(output)!;
                if (parsed.GetValue(format) == "onnx" || (parsed.GetValue(format) is null && Path.GetExtension(outputPath).Equals(".onnx", StringComparison.OrdinalIgnoreCase)))
                    return ExportOnnx(plan, create, command.ModelPath(parsed, plan), outputPath);
                var chosen = ModelLoader.ParseFormat(parsed.GetValue(format)) ?? FromExtension(outputPath)
                             ?? throw new TrainingException($"--format is needed: the extension of {outputPath} says neither .pt/.pth (pytorch), .safetensors nor .onnx");
                string modelPath = command.ModelPath(parsed, plan);
                using var net = ModelLoader.Load(modelPath, create, plan.ModelName);
                ModelLoader.Export(net, outputPath, chosen, plan.ModelName);
                int tensors = net.state_dict().Count;
                long parameters = net.parameters().Sum(p => p.numel());
                var quantized = Quantization.Quantize.QuantizedLayers(net).Select(q => $"{q.Name} ({q.Layer.Mode})").ToList();
                Console.WriteLine($"exported {plan.ModelName} from {modelPath} to {outputPath} ({(chosen == ModelFileFormat.PyTorch ? "pytorch" : "safetensors")}: {tensors} tensors, {parameters:N0} parameters)" +
                    (quantized.Count == 0 ? "" : $"; quantised layers {string.Join(", ", quantized)} are stored as weight, weight_scale, bias and quantize_mode (weight · weight_scale is the float weight): ModelDsl loads the file back, PyTorch reads it as plain tensors"));
                return 0;
            });
        }

        /// <summary>The ONNX export: the loaded model's graph (docs/inference.md#onnx); a layer without an ONNX mapping is one line, exit 2.</summary>
        private static int ExportOnnx<TModel>(TrainingPlan plan, Func<TModel> create, string modelPath, string outputPath) where TModel : nn.Module<Tensor, Tensor>
        {
            using var net = ModelLoader.Load(modelPath, create, plan.ModelName);
            try
            {
                Onnx.OnnxExport.Save(net, ModelSignature.FromPlan(plan), outputPath);
            }
            catch (NotSupportedException e)
            {
                throw new TrainingException($"cannot export {plan.ModelName} to ONNX: {e.Message}");
            }
            var quantized = Quantization.Quantize.QuantizedLayers(net).Select(q => $"{q.Name} ({q.Layer.Mode})").ToList();
            Console.WriteLine($"exported {plan.ModelName} from {modelPath} to {outputPath} (onnx, opset {Onnx.OnnxExport.Opset}: input '{Onnx.OnnxExport.InputName}', output '{Onnx.OnnxExport.OutputName}', batch dimension '{Onnx.OnnxExport.BatchDim}')" +
                (quantized.Count == 0 ? "" : $"; int8 layers {string.Join(", ", quantized)}"));
            return 0;
        }

        private static ModelFileFormat? FromExtension(string path) => Path.GetExtension(path).ToLowerInvariant() switch
        {
            ".pt" or ".pth" => ModelFileFormat.PyTorch,
            ".safetensors" => ModelFileFormat.SafeTensors,
            _ => null,
        };
    }
}
