using TorchSharp.Modules;

// In the ModelDsl namespace, beside the attributes, so that `using ModelDsl;` is all a model file needs.
namespace ModelDsl;

/// <summary>
/// Learned positions added to a sequence of vectors, <c>(B, T, C) → (B, T, C)</c>: position <c>t</c> adds row <c>t</c>
/// of a <c>(maxLength, C)</c> table, as GPT-2's <c>wpe</c> (<c>x + wpe(arange(T))</c>). Built by
/// <c>[PositionalEmbedding(maxLength)]</c>; usable on its own as any TorchSharp module.
/// </summary>
public sealed class PositionalEmbedding : nn.Module<Tensor, Tensor>
{
    /// <summary>Creates the table, initialised N(0, 0.02) as GPT-2's position embedding.</summary>
    /// <param name="maxLength">The longest sequence the layer takes.</param>
    /// <param name="embeddingDim">The vector size C.</param>
    /// <exception cref="ArgumentOutOfRangeException">A size below 1.</exception>
    public PositionalEmbedding(long maxLength, long embeddingDim) : base(nameof(PositionalEmbedding))
    {
        if (maxLength < 1) throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, "maxLength must be at least 1.");
        if (embeddingDim < 1) throw new ArgumentOutOfRangeException(nameof(embeddingDim), embeddingDim, "embeddingDim must be at least 1.");
        MaxLength = maxLength;
        EmbeddingDim = embeddingDim;
        // PyTorch's nn.Embedding draws N(0, 1), which would drown token embeddings of GPT-2's scale (0.02).
        // A variable, not a chain: the GC must not finalize the empty tensor while normal_ fills it (README.md, "Tensor temporaries").
        var init = torch.empty(maxLength, embeddingDim);
        init.normal_(0, 0.02);
        weight = new Parameter(init);
        register_parameter(nameof(weight), weight);
    }

    /// <summary>The longest sequence the layer takes.</summary>
    public long MaxLength { get; }

    /// <summary>The vector size C.</summary>
    public long EmbeddingDim { get; }

    /// <summary>The position table, <c>(maxLength, C)</c>.</summary>
    public Parameter weight { get; }

    /// <summary>
    /// The sequence position of the input's first row: 0, except while a
    /// <see cref="Runtime.Inference.GenerationSession"/> feeds the model only the positions its key/value cache lacks.
    /// </summary>
    internal long Offset { get; set; }

    /// <summary>Adds the first T rows of the table to every sequence of <paramref name="input"/>.</summary>
    /// <exception cref="ArgumentException">The input is not (B, T, C) with C = <see cref="EmbeddingDim"/> and T ≤ <see cref="MaxLength"/>.</exception>
    public override Tensor forward(Tensor input)
    {
        if (input.dim() != 3 || input.shape[2] != EmbeddingDim)
            throw new ArgumentException($"PositionalEmbedding expects an input of shape (B, T, {EmbeddingDim}), got ({string.Join(", ", input.shape)})", nameof(input));
        long t = Offset + input.shape[1];
        if (t > MaxLength)
            throw new ArgumentException($"PositionalEmbedding: the sequence has {t} positions, but the table holds maxLength = {MaxLength}; crop the input to its last {MaxLength} positions", nameof(input));
        return input + weight.narrow(0, Offset, input.shape[1]);
    }
}
