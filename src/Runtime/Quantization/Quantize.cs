using TorchSharp.Modules;

namespace ModelDsl.Runtime.Quantization;

/// <summary>
/// Post-training dynamic quantisation of <see cref="Linear"/> layers, after
/// <c>torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype)</c>, with libtorch's int8 kernels.
/// </summary>
/// <remarks>
/// Numerics equal PyTorch's <c>quantize_dynamic</c> on the onednn engine (SEMANTICS.md §2): int8 weights from the
/// default observer, activations quantised per call with <c>reduce_range</c>, int32 accumulation; outputs agree to
/// float32 rounding. Modules whose type is exactly <see cref="Linear"/> are converted (as PyTorch's exact-type
/// mapping), and recurrent layers: a generated model's <c>[LSTM]</c>/<c>[GRU]</c> layers (<see cref="RecurrentLayer"/>)
/// and TorchSharp's <see cref="LSTM"/> and <see cref="GRU"/> through their own overloads, as PyTorch's
/// <c>torch.ao.nn.quantized.dynamic.LSTM</c>/<c>GRU</c>. Float32, CPU inference only.
/// </remarks>
public static class Quantize
{
    /// <summary>
    /// Returns a quantised copy of <paramref name="model"/>, in eval mode, whose Linear layers (at any depth: inside
    /// Sequential, generated models and their sub-models) are <see cref="DynamicQuantizedLinear"/>. The original is
    /// not changed (nor the global random stream).
    /// </summary>
    /// <param name="model">A <see cref="Linear"/>, a <see cref="Sequential"/>, a generated <c>[Model]</c>, or a module
    /// with a public parameterless constructor whose Linear layers sit in <c>Module&lt;Tensor, Tensor&gt;</c> fields.</param>
    /// <param name="mode">The quantisation mode.</param>
    /// <returns>A <see cref="DynamicQuantizedLinear"/> for a Linear; otherwise a module of the same structure.</returns>
    /// <exception cref="InvalidOperationException">The model still has pruning masks (call <c>Prune.Remove</c> first).</exception>
    /// <exception cref="NotSupportedException">The model cannot be copied or rebuilt; the message says why.</exception>
    public static nn.Module<Tensor, Tensor> Dynamic(nn.Module<Tensor, Tensor> model, QuantizeMode mode)
    {
        ArgumentNullException.ThrowIfNull(model);
        CheckDynamic(mode);
        return ModuleRewriter.Convert(model, mode);
    }

    /// <summary>The modes <see cref="Dynamic(nn.Module{Tensor, Tensor}, QuantizeMode)"/> runs: all but <see cref="QuantizeMode.StaticInt8"/>.</summary>
    internal static void CheckDynamic(QuantizeMode mode)
    {
        if (!Enum.IsDefined(mode))
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown QuantizeMode.");
        if (mode == QuantizeMode.StaticInt8)
            throw new ArgumentException("QuantizeMode.StaticInt8 needs calibration data: use Quantize.Static(model, calibrationBatches).", nameof(mode));
    }

    /// <summary>
    /// Post-training static int8 quantisation, in place, as PyTorch 1.13's eager <c>fuse_modules</c> / <c>prepare</c> /
    /// calibrate / <c>convert</c> with <c>get_default_qconfig("x86")</c>: each BatchNorm is folded into the Conv2d or Linear
    /// before it, observers are placed (QuantStub/DeQuantStub where a quantised run starts and ends), the model runs on
    /// <paramref name="calibrationBatches"/>, and each Conv2d (ungrouped) and Linear becomes a
    /// <see cref="StaticQuantizedConv2d"/> or <see cref="StaticQuantizedLinear"/> (docs/optimization.md, "Static int8").
    /// </summary>
    /// <param name="model">A generated <c>[Model]</c> (its layer slots are replaced), without pruning masks.</param>
    /// <param name="calibrationBatches">Input batches, as the model takes them (e.g. training data); enumerated once.</param>
    /// <returns>The paths of the quantised layers.</returns>
    /// <exception cref="NotSupportedException">The model is not a generated [Model].</exception>
    /// <exception cref="InvalidOperationException">The model still has pruning masks.</exception>
    /// <exception cref="ArgumentException">No calibration batch was given.</exception>
    public static IReadOnlyList<string> Static(nn.Module<Tensor, Tensor> model, IEnumerable<Tensor> calibrationBatches)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(calibrationBatches);
        if (Pruning.Prune.IsPruned(model))
            throw new InvalidOperationException("The model has pruned parameters (weight_orig/weight_mask); call Prune.Remove on each of them before quantising.");
        return StaticQuantizer.Run(model, calibrationBatches).Quantized;
    }

    /// <summary>The static int8 layers of a model, with their names.</summary>
    /// <param name="model">Any module.</param>
    public static IEnumerable<(string Name, StaticQuantizedLayer Layer)> StaticLayers(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var seen = new HashSet<nn.Module>(ReferenceEqualityComparer.Instance);
        foreach (var (name, module) in model.named_modules())
        {
            if (module is StaticQuantizedLayer layer && seen.Add(layer))
                yield return (name, layer);
        }
    }

    /// <summary>
    /// <c>quantize_dynamic</c> of an <see cref="LSTM"/>: a <see cref="DynamicQuantizedLSTM"/> with the same forward
    /// signature, in eval mode (PyTorch 1.13's <c>torch.ao.nn.quantized.dynamic.LSTM</c> numerics). The original is
    /// not changed.
    /// </summary>
    /// <param name="lstm">A float32 LSTM (without projections).</param>
    /// <param name="mode">The quantisation mode.</param>
    public static DynamicQuantizedLSTM Dynamic(LSTM lstm, QuantizeMode mode)
    {
        ArgumentNullException.ThrowIfNull(lstm);
        CheckDynamic(mode);
        return new DynamicQuantizedLSTM(lstm, mode);
    }

    /// <summary><c>quantize_dynamic</c> of a <see cref="GRU"/>: a <see cref="DynamicQuantizedGRU"/>, as for an LSTM.</summary>
    /// <param name="gru">A float32 GRU.</param>
    /// <param name="mode">The quantisation mode.</param>
    public static DynamicQuantizedGRU Dynamic(GRU gru, QuantizeMode mode)
    {
        ArgumentNullException.ThrowIfNull(gru);
        CheckDynamic(mode);
        return new DynamicQuantizedGRU(gru, mode);
    }

    /// <summary>
    /// Saves a quantised model (TorchSharp's state-dict format: int8 weights take one byte each, so a Linear-heavy
    /// model's file is about 4x smaller than the float one). <c>model.save(path)</c> writes the same file.
    /// </summary>
    /// <param name="model">A model returned by <see cref="Dynamic(nn.Module{Tensor, Tensor}, QuantizeMode)"/>.</param>
    /// <param name="path">The file to write.</param>
    /// <exception cref="ArgumentException">The model has no quantised layer.</exception>
    public static void Save(nn.Module model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(path);
        if (!QuantizedLayers(model).Any() && !StaticLayers(model).Any())
            throw new ArgumentException("The model has no quantised layers; save a float model with model.save(path), or quantise it first with Quantize.Dynamic.", nameof(model));
        model.save(path);
    }

    /// <summary>
    /// Loads a file written by <see cref="Save"/>: quantises <paramref name="architecture"/> in the mode recorded in
    /// the file and loads the file's weights into the result.
    /// </summary>
    /// <param name="architecture">A float model of the saved model's architecture (e.g. <c>new DigitsCnn()</c>); it is not changed.</param>
    /// <param name="path">The file.</param>
    /// <returns>The quantised model, in eval mode.</returns>
    /// <exception cref="InvalidDataException">The file holds a float model, or a different architecture.</exception>
    public static nn.Module<Tensor, Tensor> Load(nn.Module<Tensor, Tensor> architecture, string path)
    {
        ArgumentNullException.ThrowIfNull(architecture);
        var entries = StateDictFile.Read(path);
        var modes = entries.Where(e => e.IsModeEntry).Select(e => e.Mode).Distinct().ToList();
        if (entries.Any(e => e.IsStaticModeEntry))
            throw new InvalidDataException(
                $"'{path}' holds StaticInt8 layers, whose scales came from calibration: load it with the generated Model.Load (a model whose plan declares [Quantize(QuantizeMode.StaticInt8)]), or quantise the float model again with Quantize.Static.");
        if (modes.Count == 0)
            throw new InvalidDataException(
                $"'{path}' holds a float model (no quantised layer in it): load it with model.load(path), then quantise with Quantize.Dynamic(model, mode).");
        if (modes.Count > 1)
            throw new InvalidDataException($"'{path}' mixes quantisation modes ({string.Join(", ", modes)}); Quantize.Load rebuilds one mode.");

        var quantized = Dynamic(architecture, modes[0]);
        LoadChecked(quantized, path, entries);
        return quantized;
    }

    /// <summary>
    /// Loads a file written by <see cref="Save"/> into an already quantised model of the same architecture and mode.
    /// Loading it into a float model fails with a message that says what to do instead.
    /// </summary>
    /// <param name="model">The quantised model to load into.</param>
    /// <param name="path">The file.</param>
    /// <exception cref="InvalidOperationException">The model is float where the file is quantised, or the modes differ.</exception>
    /// <exception cref="InvalidDataException">The file does not match the model's architecture.</exception>
    public static void LoadInto(nn.Module model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        var entries = StateDictFile.Read(path);
        var modules = new Dictionary<string, nn.Module> { [""] = model };
        foreach (var (name, module) in model.named_modules())
            modules[name] = module;

        foreach (var entry in entries.Where(e => e.IsModeEntry))
        {
            string layer = entry.Key.Length > "quantize_mode".Length ? entry.Key[..^(".quantize_mode".Length)] : "";
            string shown = layer.Length == 0 ? "the model" : $"'{layer}'";
            if (!modules.TryGetValue(layer, out var target))
                throw new InvalidDataException($"'{path}' holds a quantised layer {shown} that the model does not have: it was saved from a different architecture.");
            if (target is Linear)
                throw new InvalidOperationException(
                    $"'{path}' holds {entry.Mode} weights for {shown} ({(entry.Mode == QuantizeMode.Float16 ? "float16" : "int8")}), but the model's {shown} is a float Linear. " +
                    "Quantised weights cannot be loaded into a float model: use Quantize.Load(model, path), which quantises the model and loads the file, " +
                    $"or Quantize.Dynamic(model, QuantizeMode.{entry.Mode}) first.");
            if (target is DynamicQuantizedLinear q && q.Mode != entry.Mode)
                throw new InvalidOperationException($"'{path}' holds {entry.Mode} weights for {shown}, but the model's {shown} is {q.Mode}.");
        }
        if (!entries.Any(e => e.IsModeEntry) && QuantizedLayers(model).Any())
            throw new InvalidDataException(
                $"'{path}' holds a float model, but this model is quantised: load the float model with model.load(path), then call Quantize.Dynamic.");
        LoadChecked(model, path, entries);
    }

    /// <summary>The quantised layers of a model, with their names (empty for a model that is itself one).</summary>
    /// <param name="model">Any module.</param>
    public static IEnumerable<(string Name, DynamicQuantizedLinear Layer)> QuantizedLayers(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model is DynamicQuantizedLinear self)
            yield return ("", self);
        // A module registered under several names (an alias) is listed once, under its first name.
        var seen = new HashSet<nn.Module>(ReferenceEqualityComparer.Instance);
        foreach (var (name, module) in model.named_modules())
        {
            if (module is DynamicQuantizedLinear layer && seen.Add(layer))
                yield return (name, layer);
        }
    }

    private static void LoadChecked(nn.Module model, string path, IReadOnlyList<StateDictFile.Entry> entries)
    {
        var expected = model.state_dict();
        var fileKeys = entries.Select(e => e.Key).ToHashSet();
        var missing = expected.Keys.Where(k => !fileKeys.Contains(k)).ToList();
        var unexpected = entries.Select(e => e.Key).Where(k => !expected.ContainsKey(k)).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
            throw new InvalidDataException(
                $"'{path}' does not match the model's architecture" +
                (missing.Count > 0 ? $"; missing: {string.Join(", ", missing)}" : "") +
                (unexpected.Count > 0 ? $"; unexpected: {string.Join(", ", unexpected)}" : "") + ".");
        foreach (var entry in entries)
        {
            var target = expected[entry.Key];
            if (target.dtype != entry.DType || !target.shape.SequenceEqual(entry.Shape))
                throw new InvalidDataException(
                    $"'{path}': '{entry.Key}' is {entry.DType} [{string.Join(", ", entry.Shape)}] in the file but {target.dtype} [{string.Join(", ", target.shape)}] in the model.");
        }
        model.load(path);
    }
}
