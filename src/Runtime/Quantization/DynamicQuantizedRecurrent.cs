using System.Reflection;
using TorchSharp.Modules;

namespace ModelDsl.Runtime.Quantization;

/// <summary>The shape of a recurrent layer: what PyTorch's <c>nn.LSTM</c>/<c>nn.GRU</c> constructor takes.</summary>
/// <param name="InputSize">Features of each input step.</param>
/// <param name="HiddenSize">Features of the hidden state.</param>
/// <param name="NumLayers">Stacked layers.</param>
/// <param name="Bidirectional">Whether each layer also runs the sequence backwards.</param>
/// <param name="BatchFirst">Whether input and output are (batch, seq, feature) rather than (seq, batch, feature).</param>
public sealed record RecurrentOptions(long InputSize, long HiddenSize, long NumLayers, bool Bidirectional, bool BatchFirst)
{
    /// <summary>1, or 2 for a bidirectional layer.</summary>
    public int Directions => Bidirectional ? 2 : 1;

    /// <summary>
    /// Reads a TorchSharp <see cref="LSTM"/>'s or <see cref="GRU"/>'s options: sizes from its parameters
    /// (<c>weight_ih_l0</c> is (gates·hidden, input)), the rest from the module (TorchSharp 0.107 keeps
    /// <c>batch_first</c> in a private field and exposes no property for it).
    /// </summary>
    internal static RecurrentOptions Of(nn.Module module, int gates)
    {
        var parameters = module.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        if (!parameters.TryGetValue("weight_ih_l0", out var w) || !parameters.TryGetValue("weight_hh_l0", out var wh))
            throw new NotSupportedException($"Quantize.Dynamic cannot read the weights of this {module.GetType().Name} (no weight_ih_l0/weight_hh_l0).");
        if (wh.shape[0] != gates * wh.shape[1])
            throw new NotSupportedException($"Quantize.Dynamic converts {module.GetType().Name} layers without projections (proj_size = 0); weight_hh_l0 is [{string.Join(", ", wh.shape)}].");
        long layers = 0;
        while (parameters.ContainsKey($"weight_ih_l{layers}")) layers++;
        bool bidirectional = parameters.ContainsKey("weight_ih_l0_reverse");
        var field = module.GetType().GetField("_batch_first", BindingFlags.Instance | BindingFlags.NonPublic)
            ?? throw new NotSupportedException($"Quantize.Dynamic cannot tell whether this {module.GetType().Name} is batch-first (TorchSharp changed its fields); quantise it through RecurrentLayer or the DSL instead.");
        return new RecurrentOptions(w.shape[1], wh.shape[1], layers, bidirectional, (bool)field.GetValue(module)!);
    }
}

/// <summary>
/// What <see cref="DynamicQuantizedLSTM"/> and <see cref="DynamicQuantizedGRU"/> share: the options, the mode and the
/// quantised products of every layer and direction; the layers differ only in their cell and their forward signature.
/// </summary>
/// <typeparam name="TState">The initial state forward takes.</typeparam>
/// <typeparam name="TResult">What forward returns.</typeparam>
public abstract class DynamicQuantizedRecurrent<TState, TResult> : nn.Module<Tensor, TState, TResult>
{
    private protected readonly RecurrentCells _cells;

    private protected DynamicQuantizedRecurrent(string name, nn.Module source, RecurrentOptions options, int gates, QuantizeMode mode) : base(name)
    {
        _cells = new RecurrentCells(this, source, options, gates, mode);
        eval();
    }

    /// <summary>The layer's options.</summary>
    public RecurrentOptions Options => _cells.Options;

    /// <summary>The quantisation mode.</summary>
    public QuantizeMode Mode => _cells.Mode;
}

/// <summary>
/// <c>torch.ao.nn.quantized.dynamic.LSTM</c>: an <see cref="LSTM"/> whose input and hidden products run as dynamic
/// int8 (or the other <see cref="QuantizeMode"/>s) through one <see cref="DynamicQuantizedLinear"/> per weight.
/// Inference only; forward takes and returns what <see cref="LSTM"/>'s does.
/// </summary>
/// <remarks>
/// Numerics of PyTorch 1.13's <c>quantized_lstm</c> with dynamic cell parameters on the onednn engine (checked against
/// it, Oracles/rnn_quantization.json): <c>w_ih</c> and <c>w_hh</c> of each layer and direction are quantised per tensor
/// (symmetric qint8, the default observer); on the CPU each layer first multiplies its whole input sequence by
/// <c>w_ih</c> — one activation scale for all T·B rows — then each step multiplies the hidden state by <c>w_hh</c>
/// (a scale per step) and adds the two; both biases are float and added inside the products. Gates in PyTorch's order
/// (i, f, g, o): <c>c' = σ(f)·c + σ(i)·tanh(g)</c>, <c>h' = σ(o)·tanh(c')</c>.
/// </remarks>
public sealed class DynamicQuantizedLSTM : DynamicQuantizedRecurrent<(Tensor, Tensor)?, (Tensor, Tensor, Tensor)>
{
    /// <summary>Quantises <paramref name="source"/> (not changed); its options are read from it.</summary>
    /// <param name="source">A float32 TorchSharp LSTM.</param>
    /// <param name="mode">How to quantise its weights.</param>
    public DynamicQuantizedLSTM(LSTM source, QuantizeMode mode) : this(source, RecurrentOptions.Of(source, 4), mode) { }

    internal DynamicQuantizedLSTM(nn.Module source, RecurrentOptions options, QuantizeMode mode)
        : base(nameof(DynamicQuantizedLSTM), source, options, gates: 4, mode) { }

    /// <summary>
    /// Runs the sequence: <c>(output, h_n, c_n)</c>, as <see cref="LSTM"/>. <paramref name="h0_c0"/>: the initial
    /// states, each (num_layers·directions, B, hidden); zeros when null.
    /// </summary>
    public override (Tensor, Tensor, Tensor) forward(Tensor input, (Tensor, Tensor)? h0_c0 = null)
    {
        var (y, h, c) = _cells.Run(input, h0_c0?.Item1, h0_c0?.Item2, lstm: true);
        return (y, h, c!);
    }
}

/// <summary>
/// <c>torch.ao.nn.quantized.dynamic.GRU</c>: a <see cref="GRU"/> whose products run through
/// <see cref="DynamicQuantizedLinear"/> layers, as <see cref="DynamicQuantizedLSTM"/> (same quantisation, same order of
/// products). Gates in PyTorch's order (r, z, n), with <c>b_hn</c> inside the reset product:
/// <c>n = tanh(W_in x + b_in + r·(W_hn h + b_hn))</c>, <c>h' = (h − n)·z + n</c>.
/// </summary>
public sealed class DynamicQuantizedGRU : DynamicQuantizedRecurrent<Tensor?, (Tensor, Tensor)>
{
    /// <summary>Quantises <paramref name="source"/> (not changed); its options are read from it.</summary>
    /// <param name="source">A float32 TorchSharp GRU.</param>
    /// <param name="mode">How to quantise its weights.</param>
    public DynamicQuantizedGRU(GRU source, QuantizeMode mode) : this(source, RecurrentOptions.Of(source, 3), mode) { }

    internal DynamicQuantizedGRU(nn.Module source, RecurrentOptions options, QuantizeMode mode)
        : base(nameof(DynamicQuantizedGRU), source, options, gates: 3, mode) { }

    /// <summary>Runs the sequence: <c>(output, h_n)</c>, as <see cref="GRU"/>; <paramref name="h0"/> zeros when null.</summary>
    public override (Tensor, Tensor) forward(Tensor input, Tensor? h0 = null)
    {
        var (y, h, _) = _cells.Run(input, h0, null, lstm: false);
        return (y, h);
    }
}

/// <summary>
/// The quantised products of a recurrent layer, one <see cref="DynamicQuantizedLinear"/> per weight, registered on
/// the owner as <c>ih_l{k}</c>/<c>hh_l{k}</c> (<c>_reverse</c> for the backward direction), and aten's CPU
/// <c>FullLayer</c>/<c>FullBidirectionalLayer</c> loop over them.
/// </summary>
internal sealed class RecurrentCells
{
    private readonly DynamicQuantizedLinear[] _ih;
    private readonly DynamicQuantizedLinear[] _hh;

    public RecurrentCells(nn.Module owner, nn.Module source, RecurrentOptions options, int gates, QuantizeMode mode)
    {
        Quantize.CheckDynamic(mode);
        Options = options;
        Mode = mode;
        var parameters = source.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        int cells = (int)options.NumLayers * options.Directions;
        _ih = new DynamicQuantizedLinear[cells];
        _hh = new DynamicQuantizedLinear[cells];
        for (int layer = 0; layer < options.NumLayers; layer++)
        {
            for (int d = 0; d < options.Directions; d++)
            {
                string suffix = $"l{layer}{(d == 1 ? "_reverse" : "")}";
                int k = layer * options.Directions + d;
                _ih[k] = Product(parameters, "ih", suffix, mode);
                _hh[k] = Product(parameters, "hh", suffix, mode);
                owner.register_module("ih_" + suffix, _ih[k]);
                owner.register_module("hh_" + suffix, _hh[k]);
            }
        }
    }

    public RecurrentOptions Options { get; }

    public QuantizeMode Mode { get; }

    private static DynamicQuantizedLinear Product(Dictionary<string, Parameter> parameters, string which, string suffix, QuantizeMode mode)
    {
        var weight = parameters[$"weight_{which}_{suffix}"];
        if (weight.dtype != ScalarType.Float32)
            throw new ArgumentException($"Quantize.Dynamic converts float32 recurrent layers; weight_{which}_{suffix} is {weight.dtype}.");
        parameters.TryGetValue($"bias_{which}_{suffix}", out var bias);
        using var linear = nn.Linear(weight.shape[1], weight.shape[0], hasBias: bias is not null);
        using (no_grad())
        {
            linear.weight!.copy_(weight);
            if (bias is not null) linear.bias!.copy_(bias);
        }
        return new DynamicQuantizedLinear(linear, mode);
    }

    public (Tensor Output, Tensor H, Tensor? C) Run(Tensor input, Tensor? h0, Tensor? c0, bool lstm)
    {
        ArgumentNullException.ThrowIfNull(input);
        var o = Options;
        string name = lstm ? "LSTM" : "GRU";
        if (input.dim() != 3 || input.shape[2] != o.InputSize)
            throw new ArgumentException(
                $"{name} takes a 3-D input {(o.BatchFirst ? "(batch, seq, feature)" : "(seq, batch, feature)")} with {o.InputSize} features; got [{string.Join(", ", input.shape)}].", nameof(input));
        long batch = o.BatchFirst ? input.shape[0] : input.shape[1];
        long[] stateShape = { o.NumLayers * o.Directions, batch, o.HiddenSize };
        foreach (var (state, what) in new[] { (h0, "h0"), (c0, "c0") })
        {
            if (state is not null && !state.shape.SequenceEqual(stateShape))
                throw new ArgumentException($"{name}: {what} must be [{string.Join(", ", stateShape)}] (layers·directions, batch, hidden); got [{string.Join(", ", state.shape)}].");
        }

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = o.BatchFirst ? input.transpose(0, 1) : input; // (T, B, features)
        long steps = x.shape[0];
        var zeros = torch.zeros(stateShape, dtype: ScalarType.Float32);
        h0 ??= zeros;
        if (lstm) c0 ??= zeros;
        var finalH = new List<Tensor>();
        var finalC = new List<Tensor>();
        for (int layer = 0; layer < o.NumLayers; layer++)
        {
            var outputs = new List<Tensor>();
            for (int d = 0; d < o.Directions; d++)
            {
                int k = layer * o.Directions + d;
                // The input product over the whole sequence at once (aten's CPU path): one activation scale for it.
                var inputGates = _ih[k].call(x);
                var h = h0[k];
                var c = lstm ? c0![k] : null;
                var stepOutputs = new Tensor[steps];
                for (long i = 0; i < steps; i++)
                {
                    long t = d == 1 ? steps - 1 - i : i;
                    // Each step's gates and int8 intermediates die with the step; only h (and c) live on.
                    using var stepScope = NewDisposeScope();
                    var hiddenGates = _hh[k].call(h);
                    if (lstm)
                    {
                        var gates = hiddenGates.add(inputGates[t]).chunk(4, 1);
                        var ingate = gates[0].sigmoid();
                        var forgetgate = gates[1].sigmoid();
                        var cellgate = gates[2].tanh();
                        var outgate = gates[3].sigmoid();
                        c = forgetgate.mul(c!).add_(ingate.mul(cellgate));
                        h = outgate.mul(c.tanh());
                    }
                    else
                    {
                        var ig = inputGates[t].chunk(3, 1);
                        var hg = hiddenGates.chunk(3, 1);
                        var reset = hg[0].add(ig[0]).sigmoid();
                        var update = hg[1].add(ig[1]).sigmoid();
                        var candidate = ig[2].add(hg[2].mul(reset)).tanh();
                        h = h.sub(candidate).mul_(update).add_(candidate);
                    }
                    h.MoveToOuterDisposeScope();
                    c?.MoveToOuterDisposeScope();
                    stepOutputs[t] = h;
                }
                outputs.Add(stack(stepOutputs, 0));
                finalH.Add(h);
                if (lstm) finalC.Add(c!);
            }
            x = outputs.Count == 1 ? outputs[0] : cat(outputs, 2);
        }
        var y = o.BatchFirst ? x.transpose(0, 1) : x;
        var hN = stack(finalH, 0);
        var cN = lstm ? stack(finalC, 0) : null;
        y.MoveToOuterDisposeScope();
        hN.MoveToOuterDisposeScope();
        cN?.MoveToOuterDisposeScope();
        return (y, hN, cN);
    }
}
