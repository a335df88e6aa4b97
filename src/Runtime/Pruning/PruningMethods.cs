namespace ModelDsl.Runtime.Pruning;

/// <summary>PyTorch's <c>PRUNING_TYPE</c>: which entries a method ranks when it prunes among survivors.</summary>
internal enum PruningType
{
    Unstructured,
    Structured,
    Global,
}

/// <summary>
/// One pruning method: <c>compute_mask(t, default_mask)</c> of <c>torch.nn.utils.prune</c>. Masks are computed under
/// <c>no_grad</c> on scores the caller has detached; they have the scores' dtype.
/// </summary>
/// <remarks>
/// Tie-breaking differs from PyTorch on purpose: PyTorch's CPU <c>topk</c> is not stable at the cut-off, so equal
/// scores there are pruned in an unspecified order. Here entries are ranked by (score, index) with a stable sort
/// and the lowest-ranked are pruned, so among equal scores the lower flat index (or channel index) is pruned
/// first. NaN scores sort as the largest (pruned last).
/// </remarks>
internal abstract class PruningMethod
{
    public abstract PruningType Type { get; }

    /// <summary>The structured dimension (structured methods only).</summary>
    public virtual long Dim => throw new InvalidOperationException($"{Name} is not a structured method.");

    /// <summary>The class name PyTorch would print, e.g. <c>L1Unstructured</c>.</summary>
    public abstract string Name { get; }

    public abstract Tensor ComputeMask(Tensor t, Tensor defaultMask);

    /// <summary>
    /// <c>PruningContainer.compute_mask</c> / <c>_combine_masks</c>: the newest method runs only on what is still
    /// alive — the entries whose mask is 1 (unstructured, flattened row-major, so a fraction is a fraction of the
    /// survivors) or the channels along <see cref="Dim"/> with a non-zero mask sum (structured) — and its result is
    /// written back into those positions. Global methods see the whole tensor.
    /// </summary>
    public Tensor ComputeMaskAmongSurvivors(Tensor t, Tensor mask)
    {
        Tensor newMask;
        using (var typedMask = mask.to(t.dtype))
            newMask = typedMask.clone();
        switch (Type)
        {
            case PruningType.Unstructured:
            {
                using var alive = mask.eq(1);
                using var survivors = t.masked_select(alive);
                using var survivorMask = mask.masked_select(alive);
                using var partial = ComputeMask(survivors, survivorMask);
                using var typedPartial = partial.to(newMask.dtype);
                newMask.masked_scatter_(alive, typedPartial);
                return newMask;
            }
            case PruningType.Structured:
            {
                long dim = StructuredChecks.NormalizeDim(t, Dim);
                var others = Enumerable.Range(0, (int)t.dim()).Where(d => d != dim).Select(d => (long)d).ToArray();
                using var channelSums = mask.sum(others);
                using var keepChannel = channelSums.ne(0);
                using var keptRows = keepChannel.nonzero();
                using var kept = keptRows.flatten();
                using var sub = t.index_select(dim, kept);
                using var subMask = mask.index_select(dim, kept);
                using var partial = ComputeMask(sub, subMask);
                using var typedPartial = partial.to(newMask.dtype);
                newMask.index_copy_(dim, kept, typedPartial);
                return newMask;
            }
            default:
            {
                newMask.Dispose();
                using var partial = ComputeMask(t, mask);
                using var typedPartial = partial.to(t.dtype);
                return typedPartial.clone();
            }
        }
    }

    /// <summary>Flat indices of the <paramref name="k"/> lowest scores, lower index first among equals, NaN last.</summary>
    protected static Tensor LowestFirst(Tensor scores, long k) => FirstInOrder(scores, k, descending: false);

    /// <summary>Flat indices of the <paramref name="k"/> highest scores (random methods: ties have probability zero).</summary>
    protected static Tensor HighestFirst(Tensor scores, long k) => FirstInOrder(scores, k, descending: true);

    private static Tensor FirstInOrder(Tensor scores, long k, bool descending)
    {
        using var flat = scores.reshape(-1);
        var (_, order) = flat.sort(0, descending: descending, stable: true);
        using (order)
        using (var first = order.slice(0, 0, k, 1))
            return first.clone();
    }
}

/// <summary>Checks shared by the structured methods, with PyTorch's messages.</summary>
internal static class StructuredChecks
{
    /// <summary><c>_validate_structured_pruning</c>: at least two dimensions.</summary>
    public static void ValidateMultidimensional(Tensor t)
    {
        if (t.dim() <= 1)
            throw new ArgumentException(
                $"Structured pruning can only be applied to multidimensional tensors. Found tensor of shape {Shape(t)} with {t.dim()} dims");
    }

    /// <summary><c>_validate_pruning_dim</c> plus Python's negative indexing of <c>t.shape[dim]</c>.</summary>
    public static long NormalizeDim(Tensor t, long dim)
    {
        long n = t.dim();
        if (dim >= n)
            throw new ArgumentOutOfRangeException(null, $"Invalid index {dim} for tensor of size {Shape(t)}");
        if (dim < -n)
            throw new ArgumentOutOfRangeException(null, $"Invalid index {dim} for tensor of size {Shape(t)} (tuple index out of range)");
        return dim < 0 ? dim + n : dim;
    }

    /// <summary>
    /// PyTorch's <c>make_mask</c> of the structured methods: ones on the channels <paramref name="keep"/> marks along
    /// <paramref name="dim"/>, zeros elsewhere, times the mask the tensor already has.
    /// </summary>
    public static Tensor ChannelMask(Tensor t, long dim, Tensor keep, Tensor defaultMask)
    {
        using var keptRows = keep.nonzero();
        using var kept = keptRows.flatten();
        var mask = zeros_like(t);
        mask.index_fill_(dim, kept, 1);
        using var typedDefault = defaultMask.to(mask.dtype);
        mask.mul_(typedDefault);
        return mask;
    }

    public static string Shape(Tensor t) => "[" + string.Join(", ", t.shape) + "]";
}

/// <summary>
/// The unstructured methods' common part: the <c>k</c> entries (<see cref="PruneAmount.ToPrune"/> of the element count)
/// the method picks are zeroed in a copy of the mask; as in PyTorch, nothing is computed (or drawn) when <c>k</c> is 0,
/// so a random generator's stream stays aligned.
/// </summary>
internal abstract class UnstructuredMethod : PruningMethod
{
    private readonly PruneAmount _amount;
    protected UnstructuredMethod(PruneAmount amount) => _amount = amount;
    public sealed override PruningType Type => PruningType.Unstructured;

    public sealed override Tensor ComputeMask(Tensor t, Tensor defaultMask)
    {
        long k = _amount.ToPrune(t.numel());
        Tensor mask;
        using (var dense = defaultMask.contiguous())
            mask = dense.clone();
        if (k != 0)
        {
            using var pruned = PrunedEntries(t, k);
            using var flat = mask.view(-1);
            flat.index_fill_(0, pruned, 0);
        }
        return mask;
    }

    /// <summary>The flat indices of the <paramref name="k"/> entries of <paramref name="t"/> to prune.</summary>
    protected abstract Tensor PrunedEntries(Tensor t, long k);
}

/// <summary><c>prune.L1Unstructured</c>: zero the k entries of smallest absolute value.</summary>
internal sealed class L1UnstructuredMethod : UnstructuredMethod
{
    public L1UnstructuredMethod(PruneAmount amount) : base(amount) { }
    public override string Name => "L1Unstructured";

    protected override Tensor PrunedEntries(Tensor t, long k)
    {
        using var magnitude = t.abs();
        return LowestFirst(magnitude, k);
    }
}

/// <summary><c>prune.RandomUnstructured</c>: zero the k entries with the largest <c>rand_like</c> draws.</summary>
internal sealed class RandomUnstructuredMethod : UnstructuredMethod
{
    public RandomUnstructuredMethod(PruneAmount amount) : base(amount) { }
    public override string Name => "RandomUnstructured";

    protected override Tensor PrunedEntries(Tensor t, long k)
    {
        using var prob = rand_like(t);
        return HighestFirst(prob, k);
    }
}

/// <summary>
/// The structured methods' common part: the channels along <c>dim</c> are ranked, the lowest <c>k</c> of them
/// (<see cref="PruneAmount.ToPrune"/> of the channel count) are cut, and nothing is computed when <c>k</c> is 0.
/// </summary>
internal abstract class StructuredMethod : PruningMethod
{
    private readonly PruneAmount _amount;
    private readonly long _dim;

    protected StructuredMethod(PruneAmount amount, long dim)
    {
        _amount = amount;
        _dim = dim;
    }

    public sealed override PruningType Type => PruningType.Structured;
    public sealed override long Dim => _dim;

    public sealed override Tensor ComputeMask(Tensor t, Tensor defaultMask)
    {
        StructuredChecks.ValidateMultidimensional(t);
        long dim = StructuredChecks.NormalizeDim(t, _dim);
        long size = t.shape[dim];
        long k = _amount.ToPrune(size);
        if (k == 0)
            return defaultMask.clone();
        using var keep = KeptChannels(t, dim, size, k);
        return StructuredChecks.ChannelMask(t, dim, keep, defaultMask);
    }

    /// <summary>A bool vector over the <paramref name="size"/> channels of <paramref name="dim"/>: false for the <paramref name="k"/> cut.</summary>
    protected abstract Tensor KeptChannels(Tensor t, long dim, long size, long k);
}

/// <summary><c>prune.LnStructured</c>: keep the channels along <c>dim</c> with the largest Ln norms.</summary>
internal sealed class LnStructuredMethod : StructuredMethod
{
    private readonly double _n;

    public LnStructuredMethod(PruneAmount amount, double n, long dim) : base(amount, dim)
    {
        if (double.IsNaN(n))
            throw new ArgumentException("n must be a number (an integer, a float, or ±infinity), not NaN.", nameof(n));
        _n = n;
    }

    public override string Name => "LnStructured";

    protected override Tensor KeptChannels(Tensor t, long dim, long size, long k)
    {
        var others = Enumerable.Range(0, (int)t.dim()).Where(d => d != dim).Select(d => (long)d).ToArray();
        using var norms = linalg.vector_norm(t, _n, others, keepdim: false);
        using var pruned = LowestFirst(norms, k);
        var keep = ones(size, dtype: ScalarType.Bool);
        keep.index_fill_(0, pruned, false);
        return keep;
    }
}

/// <summary><c>prune.RandomStructured</c>: keep the channels whose <c>rand</c> draw exceeds the k-th smallest.</summary>
internal sealed class RandomStructuredMethod : StructuredMethod
{
    public RandomStructuredMethod(PruneAmount amount, long dim) : base(amount, dim) { }

    public override string Name => "RandomStructured";

    protected override Tensor KeptChannels(Tensor t, long dim, long size, long k)
    {
        // PyTorch draws torch.rand(nchannels) and keeps prob > kthvalue(prob, k): the same stream, the same mask.
        using var prob = rand(size);
        var (threshold, index) = prob.kthvalue(k, 0, false);
        using (threshold)
        using (index)
            return prob.gt(threshold);
    }
}

/// <summary><c>prune.CustomFromMask</c> (PRUNING_TYPE "global"): multiply the current mask by a given one.</summary>
internal sealed class CustomFromMaskMethod : PruningMethod
{
    private readonly Tensor _mask;
    public CustomFromMaskMethod(Tensor mask) => _mask = mask;
    public override PruningType Type => PruningType.Global;
    public override string Name => "CustomFromMask";

    public override Tensor ComputeMask(Tensor t, Tensor defaultMask)
    {
        if (!defaultMask.shape.SequenceEqual(_mask.shape))
            throw new ArgumentException(
                $"The mask has shape {StructuredChecks.Shape(_mask)} but the tensor it prunes has shape {StructuredChecks.Shape(defaultMask)}.");
        using var typedMask = _mask.to(defaultMask.dtype);
        return defaultMask.mul(typedMask);
    }
}
