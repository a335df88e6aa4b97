using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using ModelDsl.Runtime.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>The model files <see cref="ModelLoader"/> reads and writes.</summary>
    public enum ModelFileFormat
    {
        /// <summary>A ModelDsl training checkpoint (<c>checkpoint.ckpt</c>, <c>best.ckpt</c>), whole or sharded: only its weights are used.</summary>
        Checkpoint,
        /// <summary>PyTorch's <c>torch.save(model.state_dict())</c> zip format (<c>.pt</c>, <c>.pth</c>).</summary>
        PyTorch,
        /// <summary>safetensors (<c>.safetensors</c>).</summary>
        SafeTensors,
        /// <summary>TorchSharp's <c>Module.save</c> format: the optimised model the [Prune]/[Quantize] passes write (<c>optimized.bin</c>).</summary>
        TorchSharp,
    }

    /// <summary>
    /// Loads a model's weights from a training checkpoint, a PyTorch state dict or a safetensors file, and exports
    /// them to the latter two. Tensor names are the state-dict names, which are PyTorch's (<c>Conv1.weight</c>,
    /// <c>Norm1.running_mean</c>, …), so a file moves between ModelDsl and an equivalent PyTorch module unchanged.
    /// Generated models call it from <c>Model.Load(path)</c>.
    /// </summary>
    public static class ModelLoader
    {
        /// <summary>The safetensors metadata key that records the model class an export came from.</summary>
        public const string ModelNameKey = "modeldsl.model";

        private const int MaxListedDifferences = 3;

        /// <summary>
        /// Creates a model with <paramref name="create"/>, loads the weights of <paramref name="path"/> into it and
        /// returns it in eval mode. Throws <see cref="ModelFileException"/> when the file is missing or unreadable,
        /// was saved from another model, or does not fit (the message names the first differing parameter).
        /// </summary>
        public static TModel Load<TModel>(string path, Func<TModel> create, string modelName) where TModel : nn.Module
        {
            ArgumentNullException.ThrowIfNull(create);
            var model = create();
            Internal.LibTorchContext.TurnOffNnpack(); // no NNPACK warning per call on CPUs it does not know (Internal/LibTorchContext.cs)
            try
            {
                LoadInto(model, path, modelName);
            }
            catch
            {
                model.Dispose();
                throw;
            }
            model.eval();
            return model;
        }

        /// <summary>Loads the weights of <paramref name="path"/> into <paramref name="model"/> (see <see cref="Load{TModel}"/>); the mode is unchanged.</summary>
        public static void LoadInto(nn.Module model, string path, string modelName)
        {
            ArgumentNullException.ThrowIfNull(model);
            ArgumentException.ThrowIfNullOrEmpty(path);
            ArgumentException.ThrowIfNullOrEmpty(modelName);
            switch (DetectFormat(path))
            {
                case ModelFileFormat.Checkpoint:
                    try
                    {
                        Checkpoint.LoadWeights(path, model, (storedName, stored) => Check(path, model, modelName, storedName, stored.Select(t => (t.Name, t.Shape)).ToList()));
                    }
                    catch (CheckpointException e)
                    {
                        throw new ModelFileException(path, e.Message, e);
                    }
                    catch (Exception e) when (StepFailure.IsNative(e))
                    {
                        throw new ModelFileException(path, $"Could not load {path}: {StepFailure.FirstLine(e.Message)}", e);
                    }
                    break;
                case ModelFileFormat.PyTorch:
                    Copy(path, model, modelName, null, PyTorchFormat.Load(path));
                    break;
                case ModelFileFormat.TorchSharp:
                    Copy(path, model, modelName, null, TorchSharpFormat.Load(path));
                    break;
                default:
                    var (tensors, metadata) = SafeTensors.Load(path);
                    Copy(path, model, modelName, metadata.GetValueOrDefault(ModelNameKey), tensors);
                    break;
            }
        }

        /// <summary>
        /// Writes <paramref name="model"/>'s state dict (parameters and buffers, PyTorch's names, in registration
        /// order) to <paramref name="path"/> as <paramref name="format"/>, atomically. safetensors files also record
        /// <paramref name="modelName"/> in their metadata, so loading one into another model is a clear error.
        /// </summary>
        public static void Export(nn.Module model, string path, ModelFileFormat format, string modelName)
        {
            ArgumentNullException.ThrowIfNull(model);
            ArgumentException.ThrowIfNullOrEmpty(path);
            ArgumentException.ThrowIfNullOrEmpty(modelName);
            var tensors = model.state_dict().Select(kv => (kv.Key, kv.Value)).ToList();
            switch (format)
            {
                case ModelFileFormat.PyTorch:
                    PyTorchFormat.Save(tensors, path);
                    break;
                case ModelFileFormat.SafeTensors:
                    // "format": "pt" is what the safetensors package's torch writer records.
                    SafeTensors.Save(tensors, path, new Dictionary<string, string> { ["format"] = "pt", [ModelNameKey] = modelName });
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(format), format, "export writes PyTorch or safetensors files; checkpoints come from training");
            }
        }

        /// <summary>What a file holds, judged by its first bytes (not its name).</summary>
        public static ModelFileFormat DetectFormat(string path)
        {
            ArgumentException.ThrowIfNullOrEmpty(path);
            byte[] head = new byte[9];
            int got;
            try
            {
                using var stream = File.OpenRead(path);
                got = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
            }
            catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
            {
                throw new ModelFileException(path, $"There is no model file at {path}", e);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new ModelFileException(path, $"Could not read {path}: {e.Message}", e);
            }
            // A sharded checkpoint's index (MDSLSHIX) is a checkpoint too: its shards are read beside it.
            if (got >= 8 && Encoding.ASCII.GetString(head, 0, 8) is "MDSLCKPT" or "MDSLSHIX") return ModelFileFormat.Checkpoint;
            if (got >= 4 && head[0] == (byte)'P' && head[1] == (byte)'K' && head[2] == 3 && head[3] == 4) return ModelFileFormat.PyTorch;
            if (got == 9 && head[8] == (byte)'{') return ModelFileFormat.SafeTensors;
            // TorchSharp's format has no magic: the whole file must parse as one.
            if (got > 0 && TorchSharpFormat.Holds(ModelFiles.ReadAll(path))) return ModelFileFormat.TorchSharp;
            if (got >= 2 && head[0] == 0x80)
                throw new ModelFileException(path, $"{path} is in PyTorch's legacy format (torch.save with _use_new_zipfile_serialization=False); save it again with PyTorch's default format");
            throw new ModelFileException(path, got == 0
                ? $"{path} is empty"
                : $"{path} is not a model file ModelDsl reads: a training checkpoint, a PyTorch state dict (torch.save), a safetensors file or an optimised model (optimized.bin)");
        }

        /// <summary>The format an export option names: <c>pytorch</c> (or <c>pt</c>) and <c>safetensors</c>.</summary>
        public static ModelFileFormat? ParseFormat(string? name) => name?.ToLowerInvariant() switch
        {
            "pytorch" or "pt" or "torch" => ModelFileFormat.PyTorch,
            "safetensors" => ModelFileFormat.SafeTensors,
            _ => null,
        };

        private static void Copy(string path, nn.Module model, string modelName, string? storedName, List<(string Name, Tensor Tensor)> tensors)
        {
            try
            {
                var repeated = tensors.GroupBy(t => t.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
                if (repeated is not null) throw new ModelFileException(path, $"{path} holds '{repeated.Key}' more than once");
                // An optimised model's file: the plan's cut and quantised layers, at the file's sizes, take the declared ones' place.
                Optimization.OptimizedLayers.Rebuild(model, tensors, path);
                Check(path, model, modelName, storedName, tensors.Select(t => (t.Name, t.Tensor.shape)).ToList());
                var source = tensors.ToDictionary(t => t.Name, t => t.Tensor, StringComparer.Ordinal);
                using var noGrad = torch.no_grad();
                // copy_ converts the dtype as PyTorch's load_state_dict does (a float64 export into a float32 model).
                foreach (var (name, target) in model.state_dict())
                    target.copy_(source[name]);
            }
            finally
            {
                foreach (var (_, tensor) in tensors) tensor.Dispose();
            }
        }

        /// <summary>Throws unless the file's model name (if it records one) and every tensor name and shape fit the model.</summary>
        private static void Check(string path, nn.Module model, string modelName, string? storedName, IReadOnlyList<(string Name, long[] Shape)> stored)
        {
            var differences = Differences(model, modelName, stored);
            if (storedName is { Length: > 0 } && storedName != modelName)
                throw new ModelFileException(path, $"{path} holds the weights of model '{storedName}', not '{modelName}'" +
                    (differences.Count > 0 ? $": {differences[0]}" : "; load it with " + storedName + ".Load"));
            if (differences.Count == 0) return;
            string more = differences.Count > 1
                ? $" ({differences.Count - 1} more difference{(differences.Count > 2 ? "s" : "")}: {string.Join("; ", differences.Skip(1).Take(MaxListedDifferences))}{(differences.Count - 1 > MaxListedDifferences ? "; …" : "")})"
                : "";
            throw new ModelFileException(path, $"{path} does not fit {modelName}: {differences[0]}{more}");
        }

        /// <summary>Every difference, in the model's state-dict order first, then what only the file holds.</summary>
        private static List<string> Differences(nn.Module model, string modelName, IReadOnlyList<(string Name, long[] Shape)> stored)
        {
            var parameters = new HashSet<string>(model.named_parameters().Select(p => p.name), StringComparer.Ordinal);
            var inFile = new Dictionary<string, long[]>(StringComparer.Ordinal);
            foreach (var (name, shape) in stored) inFile[name] = shape;
            var differences = new List<string>();
            var inModel = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (name, tensor) in model.state_dict())
            {
                inModel.Add(name);
                string kind = parameters.Contains(name) ? "parameter" : "buffer";
                if (!inFile.TryGetValue(name, out var shape))
                    differences.Add($"{kind} '{name}' {Shape(tensor.shape)} is in {modelName} but not in the file");
                else if (!shape.SequenceEqual(tensor.shape))
                    differences.Add($"{kind} '{name}' is {Shape(shape)} in the file but {Shape(tensor.shape)} in {modelName}");
            }
            foreach (var (name, shape) in stored)
                if (!inModel.Contains(name))
                    differences.Add($"'{name}' {Shape(shape)} is in the file but not in {modelName}");
            return differences;
        }

        private static string Shape(long[] shape) => "[" + string.Join(", ", shape.Select(d => d.ToString(CultureInfo.InvariantCulture))) + "]";
    }
}
