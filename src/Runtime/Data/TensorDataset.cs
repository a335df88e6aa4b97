namespace ModelDsl.Runtime.Data;

/// <summary>
/// A dataset held entirely in two tensors: <see cref="Features"/> ([N, ...sample dims]) and
/// <see cref="Labels"/> ([N] or [N, k]). Batches are gathered from the whole tensors with one
/// <c>index_select</c> each, so iterating never touches individual samples from C#.
/// </summary>
/// <remarks>
/// The dataset owns its two tensors: they are detached from any <see cref="DisposeScope"/> that was active when
/// they were created, and <see cref="Dispose"/> releases them.
/// </remarks>
public sealed class TensorDataset : IDisposable
{
    private bool _disposed;

    /// <summary>Creates a dataset from features and labels and takes ownership of both tensors.</summary>
    /// <param name="features">[N, ...sample dims], float32 or int64.</param>
    /// <param name="labels">[N] int64 class indices, [N] or [N, k] float32 targets, or [N, k] int64 (sequence targets).</param>
    /// <exception cref="ArgumentException">The dtypes, ranks or sample counts do not fit together.</exception>
    public TensorDataset(Tensor features, Tensor labels)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(labels);
        if (features.dim() < 1)
            throw new ArgumentException("Features must have at least one dimension (the sample dimension N).", nameof(features));
        if (features.dtype is not (ScalarType.Float32 or ScalarType.Int64))
            throw new ArgumentException($"Features must be float32 or int64, not {features.dtype}.", nameof(features));
        if (labels.dim() is not (1 or 2))
            throw new ArgumentException($"Labels must be [N] or [N, k], not rank {labels.dim()}.", nameof(labels));
        if (labels.dtype is not (ScalarType.Float32 or ScalarType.Int64))
            throw new ArgumentException($"Labels must be int64 or float32, not {labels.dtype}.", nameof(labels));
        if (features.device_type != labels.device_type || features.device_index != labels.device_index)
            throw new ArgumentException(
                $"Features are on {features.device} but labels on {labels.device}; both must be on the same device.",
                nameof(labels));
        if (features.shape[0] != labels.shape[0])
            throw new ArgumentException(
                $"Features hold {features.shape[0]} samples but labels hold {labels.shape[0]}; the first dimension must agree.",
                nameof(labels));

        // A dataset outlives the scope it was built in (it is typically loaded once and iterated for many
        // epochs inside per-step scopes), so a scope must never free these tensors behind its back.
        Features = features.DetachFromDisposeScope();
        Labels = labels.DetachFromDisposeScope();
    }

    /// <summary>The features, [N, ...sample dims].</summary>
    public Tensor Features { get; }

    /// <summary>The labels, [N] or [N, k].</summary>
    public Tensor Labels { get; }

    /// <summary>The number of samples N.</summary>
    public long Count => Features.shape[0];

    /// <summary>The number of batches <see cref="Batches(long, bool, long, int, bool)"/> yields per epoch.</summary>
    /// <param name="batchSize">Samples per batch, at least 1.</param>
    /// <param name="dropLast">Whether a last, smaller batch is left out.</param>
    public long BatchCount(long batchSize, bool dropLast = false)
    {
        CheckBatchSize(batchSize);
        return dropLast ? Count / batchSize : (Count + batchSize - 1) / batchSize;
    }

    /// <summary>
    /// Yields the batches of one epoch. With <paramref name="shuffle"/> the order is <c>randperm(N)</c> drawn from a
    /// <see cref="torch.Generator"/> seeded with <c>seed + epoch</c> (what PyTorch's <c>DistributedSampler</c> does),
    /// so every epoch has its own order and a run is reproducible; without it the order is 0..N-1.
    /// </summary>
    /// <param name="batchSize">Samples per batch, at least 1.</param>
    /// <param name="shuffle">Whether to shuffle the order.</param>
    /// <param name="seed">The base seed of the shuffle.</param>
    /// <param name="epoch">The epoch number, added to the seed.</param>
    /// <param name="dropLast">Whether a last, smaller batch is left out.</param>
    /// <returns>
    /// (X, Y) pairs of fresh tensors (copies, never views of the dataset). The caller owns them: they join the
    /// <see cref="DisposeScope"/> that is active when the enumerator advances, or are disposed by the caller.
    /// </returns>
    public IEnumerable<(Tensor X, Tensor Y)> Batches(long batchSize, bool shuffle, long seed, int epoch, bool dropLast = false)
    {
        // Validate eagerly: an iterator body would only throw at the first MoveNext, far from the bad call.
        ObjectDisposedException.ThrowIf(_disposed, this);
        CheckBatchSize(batchSize);
        return Iterate(batchSize, shuffle, seed, epoch, dropLast);
    }

    /// <summary>
    /// Yields batches over the samples <paramref name="order"/> names, in that order (a <c>DistributedSampler</c>'s
    /// share of an epoch): consecutive runs of <paramref name="batchSize"/> indices, the last one possibly shorter.
    /// </summary>
    /// <param name="order">Sample indices; each in [0, <see cref="Count"/>).</param>
    /// <param name="batchSize">Samples per batch, at least 1.</param>
    /// <returns>(X, Y) pairs of fresh tensors owned by the caller, as <see cref="Batches(long, bool, long, int, bool)"/> gives.</returns>
    public IEnumerable<(Tensor X, Tensor Y)> Batches(long[] order, long batchSize)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(order);
        CheckBatchSize(batchSize);
        return IterateOrder(order, batchSize);
    }

    private IEnumerable<(Tensor X, Tensor Y)> IterateOrder(long[] order, long batchSize)
    {
        for (long start = 0; start < order.LongLength; start += batchSize)
        {
            long length = Math.Min(batchSize, order.LongLength - start);
            Tensor x, y;
            using (var indices = torch.tensor(order.AsSpan((int)start, (int)length).ToArray(), device: Features.device))
            {
                x = Features.index_select(0, indices);
                y = Labels.index_select(0, indices);
            }
            yield return (x, y);
        }
    }

    private IEnumerable<(Tensor X, Tensor Y)> Iterate(long batchSize, bool shuffle, long seed, int epoch, bool dropLast)
    {
        long count = Count;
        long batches = BatchCount(batchSize, dropLast);
        if (batches == 0)
            yield break;

        // The order lives across MoveNext calls, which may each run inside a different (short) scope of the
        // caller, so it is kept out of every scope and freed here when the enumeration ends or is abandoned.
        Tensor order = OrderOnDevice(count, shuffle, seed, epoch).DetachFromDisposeScope();
        try
        {
            for (long b = 0; b < batches; b++)
            {
                long start = b * batchSize;
                long length = Math.Min(batchSize, count - start);
                Tensor x, y;
                using (var indices = order.narrow(0, start, length))
                {
                    x = Features.index_select(0, indices);
                    y = Labels.index_select(0, indices);
                }
                yield return (x, y);
            }
        }
        finally
        {
            order.Dispose();
        }
    }

    /// <summary>
    /// Splits the samples at random into a training and a validation set. The permutation is
    /// <c>randperm(N)</c> from a <see cref="torch.Generator"/> seeded with <paramref name="seed"/>; the training set
    /// takes its first N - V entries and the validation set the last V = round(N * fraction) (midpoints rounded
    /// away from zero), which is what <c>torch.utils.data.random_split(ds, [N - V, V], generator)</c> does.
    /// </summary>
    /// <param name="validationFraction">In [0, 1); 0 gives an empty validation set.</param>
    /// <param name="seed">The seed of the permutation.</param>
    /// <returns>Two new datasets holding copies; this one is left unchanged.</returns>
    /// <exception cref="ArgumentOutOfRangeException">
    /// The fraction is outside [0, 1), or so close to 1 that no training sample would be left.
    /// </exception>
    public (TensorDataset Train, TensorDataset Validation) Split(double validationFraction, long seed)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!ModelDsl.Plans.PlanRules.ValidationFraction.Holds(validationFraction)) // also rejects NaN
            throw new ArgumentOutOfRangeException(nameof(validationFraction), validationFraction,
                "The validation fraction must be at least 0 and less than 1.");

        long count = Count;
        long validation = (long)Math.Round(count * validationFraction, MidpointRounding.AwayFromZero);
        if (count > 0 && validation == count)
            throw new ArgumentOutOfRangeException(nameof(validationFraction), validationFraction,
                $"A validation fraction of {validationFraction} takes all {count} samples and leaves none for training.");

        using var scope = NewDisposeScope();
        var order = OrderOnDevice(count, shuffle: true, seed, epoch: 0);
        var train = Take(order.narrow(0, 0, count - validation));
        var valid = Take(order.narrow(0, count - validation, validation));
        return (train, valid);
    }

    /// <summary>A copy of the samples <paramref name="start"/> .. <paramref name="start"/> + <paramref name="count"/> - 1.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range does not lie within 0..Count.</exception>
    public TensorDataset Subset(long start, long count)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (start < 0 || count < 0 || start > Count - count)
            throw new ArgumentOutOfRangeException(nameof(count),
                $"The range [{start}, {start} + {count}) does not lie within the {Count} samples of the dataset.");

        // clone(): a view would share storage with this dataset and die with it.
        using var scope = NewDisposeScope();
        return new TensorDataset(Features.narrow(0, start, count).clone(), Labels.narrow(0, start, count).clone());
    }

    /// <summary>Releases the feature and label tensors.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        Features.Dispose();
        Labels.Dispose();
    }

    // The sample order of one pass, int64, on the device of the data. It is always drawn from a CPU generator so
    // that a seed gives the same order whatever device the data lives on; only then is it moved (once per pass).
    private Tensor OrderOnDevice(long count, bool shuffle, long seed, int epoch)
    {
        Tensor order;
        if (!shuffle)
        {
            order = arange(count, dtype: ScalarType.Int64);
        }
        else
        {
            // unchecked: a negative sum wraps to the same 64-bit pattern libtorch's manual_seed would use.
            using var generator = new Generator(unchecked((ulong)(seed + epoch)));
            order = randperm(count, generator: generator);
        }
        if (Features.device_type == DeviceType.CPU)
            return order;
        var moved = order.to(Features.device);
        order.Dispose();
        return moved;
    }

    // A new dataset from the samples at the given indices (the constructor detaches the results from the caller's scope).
    private TensorDataset Take(Tensor indices) =>
        new(Features.index_select(0, indices), Labels.index_select(0, indices));

    private static void CheckBatchSize(long batchSize)
    {
        if (!ModelDsl.Plans.PlanRules.BatchSize.Holds(batchSize))
            throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "The batch size must be at least 1.");
    }
}
