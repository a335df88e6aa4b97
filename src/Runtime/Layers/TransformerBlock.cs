using TorchSharp.Modules;

namespace ModelDsl;

/// <summary>
/// <see cref="TransformerLayer"/>s in sequence, each with its own weights (PyTorch's <c>nn.TransformerEncoder</c> of
/// pre-LayerNorm layers, GPT-2's <c>h</c>): <c>(B, T, C) → (B, T, C)</c>. Built by <c>[TransformerBlock(Heads = h,
/// Repeat = n)]</c>. The layers are its sub-modules <c>0</c> … <c>n−1</c>; through <see cref="ILayerHost"/> a pass
/// reaches the Linear layers inside them (the int8 pass replaces them there).
/// </summary>
public sealed class TransformerBlock : nn.Module<Tensor, Tensor>, ILayerHost
{
    private readonly TransformerLayer[] _layers;

    /// <summary>Creates <paramref name="repeat"/> identical layers (PyTorch's default initialisation each).</summary>
    /// <param name="embeddingDim">The vector size C.</param>
    /// <param name="heads">Attention heads; must divide C.</param>
    /// <param name="mlpRatio">Hidden units of the MLP per input unit.</param>
    /// <param name="dropout">Dropout on the attention weights and on each residual branch while training.</param>
    /// <param name="causal">Whether position t attends only to positions ≤ t.</param>
    /// <param name="repeat">Number of layers.</param>
    /// <exception cref="ArgumentException">A size below 1, heads not dividing C, or dropout outside [0, 1).</exception>
    public TransformerBlock(long embeddingDim, long heads, long mlpRatio = 4, double dropout = 0.0, bool causal = true, long repeat = 1)
        : base(nameof(TransformerBlock))
    {
        if (repeat < 1) throw new ArgumentOutOfRangeException(nameof(repeat), repeat, "repeat must be at least 1.");
        RegisterComponents(); // the layers are registered by name below, not by field
        _layers = new TransformerLayer[repeat];
        LayerNames = NumberedLayers.Names(repeat);
        for (int i = 0; i < repeat; i++)
        {
            _layers[i] = new TransformerLayer(embeddingDim, heads, mlpRatio, dropout, causal);
            register_module(LayerNames[i], _layers[i]);
        }
    }

    /// <summary>The layers, in the order they run.</summary>
    public IReadOnlyList<TransformerLayer> Layers => _layers;

    /// <summary>Whether each layer keeps only its input and runs again in backward (<see cref="Runtime.Training.BlockRecompute"/>).</summary>
    internal bool Recompute { get; set; }

    /// <summary>Runs the layers in sequence.</summary>
    public override Tensor forward(Tensor input) => NumberedLayers.Run(_layers, input, Recompute);

    /// <summary>The layer names <c>0</c> … <c>n−1</c> (the registered sub-module names).</summary>
    public IReadOnlyList<string> LayerNames { get; }

    bool ILayerHost.ForwardIsGenerated => true;

    /// <summary>The layers as a chain (each copy feeds the next), output shapes unknown ("?").</summary>
    ModelSummary ILayerHost.Summary => LayerHostSummary.Of(nameof(TransformerBlock), this);

    /// <summary>The layer named <paramref name="name"/>.</summary>
    public object GetLayer(string name) => _layers[Index(name)];

    /// <summary>Not supported: a pass replaces the Linear layers inside each <see cref="TransformerLayer"/>, not a whole layer.</summary>
    public object ReplaceLayer(string name, object replacement) =>
        throw new NotSupportedException($"TransformerBlock layer '{name}' cannot be replaced as a whole; replace the modules inside it through its own ReplaceLayer");

    private int Index(string name) => NumberedLayers.Index(name, LayerNames, "a layer of this TransformerBlock", "layers");
}

/// <summary>
/// One pre-LayerNorm Transformer layer (GPT-2's block; PyTorch's <c>nn.TransformerEncoderLayer(norm_first=True,
/// activation="gelu")</c>): <c>x + dropout(attn(norm1(x)))</c>, then <c>x + dropout(linear2(gelu(linear1(norm2(x)))))</c>.
/// Attention is multi-head self-attention through libtorch's <c>scaled_dot_product_attention</c>, with the query, key
/// and value projections in one Linear (<c>in_proj</c>, C → 3C) and <c>out_proj</c> after it.
/// </summary>
/// <remarks>
/// Its six modules sit in replaceable slots (<see cref="ILayerHost"/>), so quantisation can put int8 Linear layers in
/// place of <c>in_proj</c>, <c>out_proj</c>, <c>linear1</c> and <c>linear2</c> and <see cref="forward"/> runs them.
/// </remarks>
public sealed class TransformerLayer : nn.Module<Tensor, Tensor>, ILayerHost
{
    private static readonly string[] Names = { "norm1", "in_proj", "out_proj", "norm2", "linear1", "linear2" };
    // Slots typed as any one-tensor module, one field each: a replacement (an int8 Linear) goes where the float one
    // was, whether through ReplaceLayer or Quantize.Dynamic's copy, which stores into the field holding the layer.
    private nn.Module<Tensor, Tensor> _norm1, _inProj, _outProj, _norm2, _linear1, _linear2;
    private readonly double _dropout;

    /// <summary>Creates the layer with PyTorch's default initialisation of its LayerNorm and Linear modules.</summary>
    /// <exception cref="ArgumentException">A size below 1, heads not dividing C, or dropout outside [0, 1).</exception>
    public TransformerLayer(long embeddingDim, long heads, long mlpRatio = 4, double dropout = 0.0, bool causal = true)
        : base(nameof(TransformerLayer))
    {
        if (embeddingDim < 1) throw new ArgumentOutOfRangeException(nameof(embeddingDim), embeddingDim, "embeddingDim must be at least 1.");
        if (heads < 1) throw new ArgumentOutOfRangeException(nameof(heads), heads, "heads must be at least 1.");
        if (embeddingDim % heads != 0) throw new ArgumentException($"embed_dim must be divisible by num_heads (embeddingDim = {embeddingDim}, heads = {heads})", nameof(heads));
        if (mlpRatio < 1) throw new ArgumentOutOfRangeException(nameof(mlpRatio), mlpRatio, "mlpRatio must be at least 1.");
        if (!(dropout >= 0 && dropout < 1)) throw new ArgumentOutOfRangeException(nameof(dropout), dropout, "dropout probability has to be between 0 and 1 (exclusive of 1).");
        EmbeddingDim = embeddingDim;
        Heads = heads;
        Causal = causal;
        _dropout = dropout;

        RegisterComponents(); // the slots are registered by name below
        _norm1 = nn.LayerNorm(embeddingDim);
        _inProj = nn.Linear(embeddingDim, 3 * embeddingDim);
        _outProj = nn.Linear(embeddingDim, embeddingDim);
        _norm2 = nn.LayerNorm(embeddingDim);
        _linear1 = nn.Linear(embeddingDim, mlpRatio * embeddingDim);
        _linear2 = nn.Linear(mlpRatio * embeddingDim, embeddingDim);
        foreach (var name in Names) register_module(name, (nn.Module)GetLayer(name));
    }

    /// <summary>The vector size C.</summary>
    public long EmbeddingDim { get; }
    /// <summary>Attention heads.</summary>
    public long Heads { get; }
    /// <summary>Whether position t attends only to positions ≤ t.</summary>
    public bool Causal { get; }

    /// <summary>The layer on <c>(B, T, C)</c>.</summary>
    public override Tensor forward(Tensor input)
    {
        if (input.dim() != 3 || input.shape[2] != EmbeddingDim)
            throw new ArgumentException($"TransformerLayer expects an input of shape (B, T, {EmbeddingDim}), got ({string.Join(", ", input.shape)})", nameof(input));
        var x = input + nn.functional.dropout(Attention(_norm1.call(input)), _dropout, training);
        var mlp = _linear2.call(nn.functional.gelu(_linear1.call(_norm2.call(x))));
        return x + nn.functional.dropout(mlp, _dropout, training);
    }

    /// <summary>Multi-head self-attention: softmax(QKᵀ/√d + mask)·V per head, then the output projection.</summary>
    private Tensor Attention(Tensor h)
    {
        long b = h.shape[0], t = h.shape[1], c = h.shape[2], d = c / Heads;
        // (B, T, 3C) → (3, B, heads, T, d): one matmul for q, k and v, as PyTorch's in_proj_weight.
        var qkv = _inProj.call(h).view(b, t, 3, Heads, d).permute(2, 0, 3, 1, 4);
        var y = Cache is { } cache
            ? cache.Attend(qkv[0], qkv[1], qkv[2])
            : nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], p: training ? _dropout : 0.0, is_casual: Causal);
        return _outProj.call(y.transpose(1, 2).reshape(b, t, c));
    }

    /// <summary>
    /// The key/value cache while a <see cref="Runtime.Inference.GenerationSession"/> runs the model, else <c>null</c>
    /// (training and plain forward never use one).
    /// </summary>
    internal KeyValueCache? Cache { get; set; }

    /// <summary><c>norm1</c>, <c>in_proj</c>, <c>out_proj</c>, <c>norm2</c>, <c>linear1</c>, <c>linear2</c>.</summary>
    public IReadOnlyList<string> LayerNames => Names;

    bool ILayerHost.ForwardIsGenerated => true;

    /// <summary>
    /// The slots in the order they run, as a chain: the residual additions and the attention between in_proj and
    /// out_proj are the layer's own, not slots, so this lists the slots for passes that replace them (int8), not the
    /// dataflow (norm2 reads the input plus out_proj's output). The key/value cache reads the layer as a chain.
    /// </summary>
    ModelSummary ILayerHost.Summary => LayerHostSummary.Of(nameof(TransformerLayer), this);

    /// <summary>The module in slot <paramref name="name"/>.</summary>
    public object GetLayer(string name) => name switch
    {
        "norm1" => _norm1,
        "in_proj" => _inProj,
        "out_proj" => _outProj,
        "norm2" => _norm2,
        "linear1" => _linear1,
        "linear2" => _linear2,
        _ => throw NoSuchLayer(name),
    };

    /// <summary>Puts <paramref name="replacement"/> (a <c>Module&lt;Tensor, Tensor&gt;</c>) in slot <paramref name="name"/>; returns what it held.</summary>
    public object ReplaceLayer(string name, object replacement)
    {
        var module = replacement as nn.Module<Tensor, Tensor>
            ?? throw new ArgumentException($"a layer must be a Module<Tensor, Tensor>, got {replacement?.GetType().Name ?? "null"}", nameof(replacement));
        var previous = GetLayer(name);
        switch (name)
        {
            case "norm1": _norm1 = module; break;
            case "in_proj": _inProj = module; break;
            case "out_proj": _outProj = module; break;
            case "norm2": _norm2 = module; break;
            case "linear1": _linear1 = module; break;
            default: _linear2 = module; break;
        }
        _internal_submodules[name] = module; // in place: the state dict keeps its order
        return previous;
    }

    private static ArgumentException NoSuchLayer(string name) =>
        new($"'{name}' is not a layer of TransformerLayer; its layers are {string.Join(", ", Names)}", nameof(name));
}

/// <summary>
/// The keys and values one causal <see cref="TransformerLayer"/> has computed for the positions before the current
/// input, so that a new position costs one query against them instead of recomputing the whole sequence. Buffers of
/// <c>(B, heads, capacity, d)</c> are allocated on first use and written in place; <see cref="Length"/> positions
/// are filled. Used only by <see cref="Runtime.Inference.GenerationSession"/>.
/// </summary>
internal sealed class KeyValueCache : IDisposable
{
    private Tensor? _keys, _values;

    /// <param name="capacity">The most positions the cache holds (the model's context window).</param>
    public KeyValueCache(long capacity) => Capacity = capacity;

    /// <summary>The most positions the cache holds.</summary>
    public long Capacity { get; }

    /// <summary>Positions filled: the input's first position is position <see cref="Length"/> of the sequence.</summary>
    public long Length { get; private set; }

    /// <summary>Forgets every position (the buffers are kept).</summary>
    public void Clear() => Length = 0;

    /// <summary>
    /// Appends the new positions' keys and values and attends the new queries to all cached positions, causally:
    /// new position i (sequence position Length + i) sees positions 0 … Length + i. q, k, v are (B, heads, t, d).
    /// </summary>
    public Tensor Attend(Tensor q, Tensor k, Tensor v)
    {
        var shape = k.shape; // (B, heads, t, d)
        long t = shape[2], past = Length;
        if (past + t > Capacity)
            throw new InvalidOperationException($"the key/value cache holds {Capacity} positions; {past} are filled and {t} more do not fit");
        shape[2] = Capacity;
        if (_keys is null || _values is null || !_keys.shape.SequenceEqual(shape) || _keys.dtype != k.dtype
            || _keys.device_type != k.device_type || _keys.device_index != k.device_index)
        {
            _keys?.Dispose();
            _values?.Dispose();
            _keys = empty(shape, k.dtype, k.device).DetachFromDisposeScope();
            _values = empty(shape, v.dtype, v.device).DetachFromDisposeScope();
        }
        _keys.narrow(2, past, t).copy_(k);
        _values.narrow(2, past, t).copy_(v);
        Length = past + t;
        var keys = _keys.narrow(2, 0, Length);
        var values = _values.narrow(2, 0, Length);
        if (t == 1 || past == 0) // one new position sees everything cached; a first chunk is an ordinary causal pass
            return nn.functional.scaled_dot_product_attention(q, keys, values, is_casual: t > 1);
        // New position i may see sequence positions 0 … past + i (True = attend).
        var allowed = ones(new[] { t, Length }, ScalarType.Bool, q.device).tril(past);
        return nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask: allowed);
    }

    public void Dispose()
    {
        _keys?.Dispose();
        _values?.Dispose();
        _keys = _values = null;
        Length = 0;
    }
}
