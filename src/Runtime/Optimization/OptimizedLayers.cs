using System.Reflection;
using ModelDsl.Runtime.Inference;
using ModelDsl.Runtime.Pruning;
using ModelDsl.Runtime.Quantization;
using ModelDsl.Runtime.Training;
using TorchSharp.Modules;

namespace ModelDsl.Runtime.Optimization
{
    /// <summary>
    /// Gives a freshly built model the layers its optimisation plan leaves behind — the smaller Linear, Conv2d and
    /// BatchNorm2d of a structured cut, the <see cref="DynamicQuantizedLinear"/> of a [Quantize] pass, the
    /// <see cref="FoldedBatchNorm"/> of a BatchNorm folded into the layer before it — sized from the
    /// file being loaded, so that <c>optimized.bin</c> (and its exports) load like any other model file. Only what the
    /// plan allows is changed: a file whose other shapes differ still fails the loader's strict comparison.
    /// </summary>
    internal static class OptimizedLayers
    {
        private const string ModeKey = "quantize_mode";
        private const string RecurrentModeKey = "rnn.ih_l0." + ModeKey;

        /// <summary>
        /// Replaces, in place, the layers of <paramref name="model"/> that the file's tensors show optimised. A model
        /// without a plan or passes, or a file of the float model, changes nothing. Throws
        /// <see cref="ModelFileException"/> when the file's optimised layers are not what the plan could make.
        /// </summary>
        public static void Rebuild(nn.Module model, IReadOnlyList<(string Name, Tensor Tensor)> stored, string path)
        {
            if (model is not ILayerHost host || PlanOf(model) is not { Passes.Count: > 0 } plan) return;
            var file = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var (name, tensor) in stored) file.TryAdd(name, tensor);

            var shrinkable = new HashSet<string>(StringComparer.Ordinal);
            foreach (var pass in plan.Passes.OfType<PrunePass>().Where(p => p.Method == PruneMethod.Structured))
            {
                foreach (var (scope, prefix, target) in pass.Targets.SelectMany(t => OptimizationPipeline.Resolve(host, t)))
                {
                    shrinkable.Add(prefix + target);
                    shrinkable.UnionWith(OptimizationPipeline.Group(scope, target).Layers.Select(l => prefix + l));
                }
            }
            bool quantized = plan.Passes.OfType<QuantizePass>().Any();
            if (!Replace(host, "", file, shrinkable, quantized, path)) return;

            // The cut layers must still chain: one forward of a zero sample says so before any weight is copied.
            try
            {
                using var scope = torch.NewDisposeScope();
                using var noGrad = torch.no_grad();
                var shape = new long[] { 1 }.Concat(plan.SampleShape).ToArray();
                var probe = plan.InputIsInteger ? torch.zeros(shape, ScalarType.Int64) : torch.zeros(shape);
                bool training = model.training;
                model.eval();
                ((nn.Module<Tensor, Tensor>)model).call(probe);
                model.train(training);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.Runtime.InteropServices.ExternalException)
            {
                throw new ModelFileException(path, $"{path} does not fit {plan.ModelName}: its pruned layer sizes do not chain ({StepFailure.FirstLine(e.Message)})", e);
            }
        }

        /// <summary>The <c>[Train]</c> plan a generated model exposes as its static <c>Plan</c>, if it has one.</summary>
        private static TrainingPlan? PlanOf(nn.Module model) =>
            model.GetType().GetProperty("Plan", BindingFlags.Public | BindingFlags.Static)?.GetValue(null) as TrainingPlan;

        private static bool Replace(ILayerHost host, string prefix, Dictionary<string, Tensor> file, HashSet<string> shrinkable, bool quantized, string path)
        {
            bool changed = false;
            foreach (var name in host.LayerNames)
            {
                string key = prefix + name + ".";
                bool shrinks = shrinkable.Contains(prefix + name);
                var layer = host.GetLayer(name);
                if (layer is ILayerHost inner)
                {
                    // The quantisation pass reaches the Linear layers of composed models too, and the fold their BatchNorms.
                    changed |= Replace(inner, key, file, shrinkable, quantized, path);
                    continue;
                }
                // A BatchNorm the pipeline folded into the layer before it; that layer gained a bias if it had none.
                bool folded = file.ContainsKey(key + FoldedBatchNorm.MarkerName);
                bool gainsBias = FoldsInto(host, name, key, file);
                nn.Module<Tensor, Tensor>? replacement = layer switch
                {
                    BatchNorm2d or BatchNorm1d when folded => new FoldedBatchNorm(),
                    Linear or Conv2d when quantized && IsStatic(file, key, path) => StaticLayer(layer, key, file, shrinks, path),
                    Linear linear when quantized && file.ContainsKey(key + ModeKey) => Quantized(linear, key, file, shrinks, path),
                    // An [LSTM]/[GRU] layer's int8 module holds one quantised product per weight (ih_l0, hh_l0, ...).
                    RecurrentLayer recurrent when quantized && file.ContainsKey(key + RecurrentModeKey) =>
                        recurrent.Quantized(ModeOf(file, key + RecurrentModeKey, path)),
                    Linear linear when CutOrFolded(file, key, linear.weight.shape, shrinks, gainsBias, path) is { } w =>
                        nn.Linear(w[1], w[0], gainsBias || linear.bias is not null),
                    Conv2d conv when CutOrFolded(file, key, conv.weight.shape, shrinks, gainsBias, path) is { } w =>
                        Prune.CopyConv(conv, w[1], w[0], bias: gainsBias ? true : null),
                    BatchNorm2d norm when shrinks && Sizes(file, key + "running_mean", 1, new[] { norm.num_features }, path) is { } w =>
                        nn.BatchNorm2d(w[0], norm.eps, norm.momentum ?? 0.1, norm.affine, norm.track_running_stats),
                    _ => null,
                };
                if (replacement is null) continue;
                if (host.ReplaceLayer(name, replacement) is IDisposable old) old.Dispose();
                changed = true;
            }
            return changed;
        }

        /// <summary>
        /// The weight sizes a Linear or Conv2d is rebuilt at: the file's where the plan cut it, the declared ones where
        /// only the fold gave it a bias; null when it stays as declared.
        /// </summary>
        private static long[]? CutOrFolded(Dictionary<string, Tensor> file, string key, long[] declared, bool shrinks, bool gainsBias, string path) =>
            (shrinks ? Sizes(file, key + "weight", declared.Length, declared, path) : null) ?? (gainsBias ? declared : null);

        /// <summary>
        /// Whether the layer <paramref name="name"/> lacks the bias the file holds for it because the BatchNorm reading it
        /// was folded into it (the fold always leaves a bias).
        /// </summary>
        private static bool FoldsInto(ILayerHost host, string name, string key, Dictionary<string, Tensor> file)
        {
            // The BatchNorm folded into it is its one reader (OptimizationPipeline.FoldBatchNorms).
            var readers = host.Summary.Layers.Where(l => l.Sources.Contains(name)).ToArray();
            if (readers.Length != 1 || !file.ContainsKey(key + "bias")) return false;
            string nextKey = key.Substring(0, key.Length - name.Length - 1) + readers[0].Name + "." + FoldedBatchNorm.MarkerName;
            return file.ContainsKey(nextKey) && host.GetLayer(name) switch
            {
                Conv2d conv => conv.bias is null,
                Linear linear => linear.bias is null,
                _ => false,
            };
        }

        /// <summary>The int8 (or float16) layer the file holds for a Linear, at the file's sizes where the plan may have cut it.</summary>
        private static DynamicQuantizedLinear Quantized(Linear linear, string key, Dictionary<string, Tensor> file, bool shrinks, string path)
        {
            var mode = ModeOf(file, key + ModeKey, path);
            long[] sizes = (shrinks ? Sizes(file, key + "weight", 2, linear.weight.shape, path) : null) ?? linear.weight.shape;
            if (file.TryGetValue(key + "weight", out var weight))
            {
                var expected = mode == QuantizeMode.Float16 ? ScalarType.Float16 : ScalarType.Int8;
                if (weight.dtype != expected)
                    throw new ModelFileException(path, $"{path}: '{key}weight' is {weight.dtype}, but a {mode} layer stores {expected} weights");
            }
            using var template = nn.Linear(sizes[1], sizes[0], linear.bias is not null);
            return new DynamicQuantizedLinear(template, mode);
        }

        /// <summary>Whether the file holds a static int8 layer under <paramref name="key"/>.</summary>
        private static bool IsStatic(Dictionary<string, Tensor> file, string key, string path) =>
            file.ContainsKey(key + ModeKey) && ModeOf(file, key + ModeKey, path) == QuantizeMode.StaticInt8;

        /// <summary>
        /// The static int8 layer the file holds for a Linear or Conv2d, at the file's sizes where the plan may have cut it,
        /// with a bias where the file has one (a folded BatchNorm gives one); the loader then fills in its weights and
        /// quantisation parameters.
        /// </summary>
        private static StaticQuantizedLayer StaticLayer(object layer, string key, Dictionary<string, Tensor> file, bool shrinks, string path)
        {
            if (file.TryGetValue(key + "weight", out var weight) && weight.dtype != ScalarType.Int8)
                throw new ModelFileException(path, $"{path}: '{key}weight' is {weight.dtype}, but a StaticInt8 layer stores Int8 weights");
            bool hasBias = file.ContainsKey(key + "bias");
            var placeholder = new StaticQParams(1f, 0, 1f, 0, false);
            switch (layer)
            {
                case Linear linear:
                {
                    long[] sizes = (shrinks ? Sizes(file, key + "weight", 2, linear.weight.shape, path) : null) ?? linear.weight.shape;
                    using var template = nn.Linear(sizes[1], sizes[0], hasBias);
                    return new StaticQuantizedLinear(template, placeholder);
                }
                default:
                {
                    var conv = (Conv2d)layer;
                    long[] sizes = (shrinks ? Sizes(file, key + "weight", 4, conv.weight.shape, path) : null) ?? conv.weight.shape;
                    using var template = Prune.CopyConv(conv, sizes[1], sizes[0], bias: hasBias);
                    return new StaticQuantizedConv2d(template, placeholder);
                }
            }
        }

        /// <summary>The quantisation mode a file stores under <paramref name="modeKey"/>.</summary>
        private static QuantizeMode ModeOf(Dictionary<string, Tensor> file, string modeKey, string path)
        {
            var modeTensor = file[modeKey];
            long value = modeTensor.dtype == ScalarType.Int64 && modeTensor.numel() == 1 ? modeTensor.item<long>() : -1;
            if (!Enum.IsDefined((QuantizeMode)value))
                throw new ModelFileException(path, $"{path}: '{modeKey}' is not a quantisation mode");
            return (QuantizeMode)value;
        }

        /// <summary>
        /// The sizes of a file tensor that a structured cut may have made: the same rank, every size between 1 and
        /// the declared one. Null when the file does not hold it (the loader reports what is missing).
        /// </summary>
        private static long[]? Sizes(Dictionary<string, Tensor> file, string key, int rank, long[] declared, string path)
        {
            if (!file.TryGetValue(key, out var tensor) || tensor.dim() != rank) return null;
            long[] sizes = tensor.shape;
            if (sizes.SequenceEqual(declared)) return null;
            for (int d = 0; d < rank; d++)
            {
                if (sizes[d] < 1 || sizes[d] > declared[d])
                    throw new ModelFileException(path, $"{path} does not fit its model: '{key}' is [{string.Join(", ", sizes)}], and pruning only removes rows or channels of the declared [{string.Join(", ", declared)}]");
            }
            return sizes;
        }
    }
}
