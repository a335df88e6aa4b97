using ModelDsl.Runtime.Internal;
using ModelDsl.Runtime.Quantization;
using TorchSharp.Modules;

// In the ModelDsl namespace, beside the attributes, so that `using ModelDsl;` is all a model file needs.
namespace ModelDsl;

/// <summary>
/// A recurrent layer as one step of a model's chain: runs its <see cref="LSTM"/> or <see cref="GRU"/> (or their
/// quantised forms) from zero initial states and passes the output sequence on, <c>(B, T, C) → (B, T, H·directions)</c>
/// — PyTorch's <c>x, _ = self.rnn(x)</c>. Built by <c>[LSTM(hidden)]</c> and <c>[GRU(hidden)]</c>; the model's
/// <c>LSTM</c>/<c>GRU</c> property returns the module inside, registered as <c>rnn</c> (state-dict keys
/// <c>Rnn.rnn.weight_ih_l0</c>, …).
/// </summary>
public sealed class RecurrentLayer : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module _rnn;

    private RecurrentLayer(nn.Module rnn, bool isLstm, RecurrentOptions options) : base(nameof(RecurrentLayer))
    {
        // Registered by name only: without this, TorchSharp would also register the field (as '_rnn') when the
        // layer becomes a child of a model, so the state dict would hold every weight twice.
        RegisterComponents();
        _rnn = rnn;
        IsLstm = isLstm;
        Options = options;
        register_module("rnn", rnn);
    }

    /// <summary><c>nn.LSTM(inputSize, hiddenSize, numLayers, bias=True, batch_first, bidirectional=...)</c> in a chain step.</summary>
    public static RecurrentLayer LSTM(long inputSize, long hiddenSize, long numLayers = 1, bool bidirectional = false, bool batchFirst = true) =>
        new(nn.LSTM(inputSize, hiddenSize, numLayers, bias: true, batchFirst: batchFirst, bidirectional: bidirectional), true,
            new RecurrentOptions(inputSize, hiddenSize, numLayers, bidirectional, batchFirst));

    /// <summary><c>nn.GRU(inputSize, hiddenSize, numLayers, bias=True, batch_first, bidirectional=...)</c> in a chain step.</summary>
    public static RecurrentLayer GRU(long inputSize, long hiddenSize, long numLayers = 1, bool bidirectional = false, bool batchFirst = true) =>
        new(nn.GRU(inputSize, hiddenSize, numLayers, bias: true, batchFirst: batchFirst, bidirectional: bidirectional), false,
            new RecurrentOptions(inputSize, hiddenSize, numLayers, bidirectional, batchFirst));

    /// <summary>Whether the layer is an LSTM (otherwise a GRU).</summary>
    public bool IsLstm { get; }

    /// <summary>The layer's sizes and layout.</summary>
    public RecurrentOptions Options { get; }

    /// <summary>The module inside: <see cref="LSTM"/>, <see cref="GRU"/>, <see cref="DynamicQuantizedLSTM"/> or <see cref="DynamicQuantizedGRU"/>.</summary>
    public nn.Module Module => _rnn;

    /// <summary>Whether the module inside is quantised.</summary>
    public bool IsQuantized => _rnn is DynamicQuantizedLSTM or DynamicQuantizedGRU;

    /// <summary>The output sequence for <paramref name="input"/>, from zero initial states.</summary>
    public override Tensor forward(Tensor input)
    {
        // The final states are not passed on: dispose them here rather than leave them to the GC.
        switch (_rnn)
        {
            // Float layers run on ATen's recurrent kernels, not oneDNN's (wrong on some AVX-512 CPUs: see OneDnn).
            case TorchSharp.Modules.LSTM lstm:
            {
                var (y, h, c) = OneDnn.Without(() => lstm.call(input, null));
                h.Dispose();
                c.Dispose();
                return y;
            }
            case TorchSharp.Modules.GRU gru:
            {
                var (y, h) = OneDnn.Without(() => gru.call(input, null));
                h.Dispose();
                return y;
            }
            case DynamicQuantizedLSTM lstm:
            {
                var (y, h, c) = lstm.call(input, null);
                h.Dispose();
                c.Dispose();
                return y;
            }
            case DynamicQuantizedGRU gru:
            {
                var (y, h) = gru.call(input, null);
                h.Dispose();
                return y;
            }
            default:
                throw new InvalidOperationException($"RecurrentLayer holds a {_rnn.GetType().Name}");
        }
    }

    /// <summary>A new layer of the same options with fresh weights (the copy Quantize.Dynamic fills with this one's state).</summary>
    internal RecurrentLayer CloneEmpty() =>
        IsQuantized
            ? throw new NotSupportedException("Quantize.Dynamic copies float recurrent layers; this one is already quantised.")
            : IsLstm
                ? LSTM(Options.InputSize, Options.HiddenSize, Options.NumLayers, Options.Bidirectional, Options.BatchFirst)
                : GRU(Options.InputSize, Options.HiddenSize, Options.NumLayers, Options.Bidirectional, Options.BatchFirst);

    /// <summary>A layer holding the quantised form of this one's float module (this one is not changed).</summary>
    internal RecurrentLayer Quantized(QuantizeMode mode)
    {
        if (IsQuantized)
            throw new InvalidOperationException("The recurrent layer is already quantised.");
        nn.Module quantized = IsLstm ? new DynamicQuantizedLSTM(_rnn, Options, mode) : new DynamicQuantizedGRU(_rnn, Options, mode);
        var layer = new RecurrentLayer(quantized, IsLstm, Options);
        layer.eval();
        return layer;
    }
}
