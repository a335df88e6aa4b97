using System;
using System.Collections;
using System.Collections.Generic;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// Splits the indices of a dataset among the ranks of a job, as PyTorch's
/// <c>torch.utils.data.distributed.DistributedSampler</c> does (SEMANTICS.md §3): each rank gets
/// <see cref="NumSamples"/> indices per epoch, disjoint across ranks except for the padding.
/// </summary>
/// <remarks>
/// <para>With <c>shuffle</c> the order is <c>randperm(N)</c> from a generator seeded with <c>seed + epoch</c>
/// (libtorch's own <c>randperm</c>, so the permutation equals PyTorch's); without it, <c>0 .. N-1</c>. Without
/// <c>dropLast</c> the list is padded to <see cref="TotalSize"/> by repeating it from the start (as often as
/// needed); with <c>dropLast</c> it is cut to <see cref="TotalSize"/>. Rank <c>r</c> takes every
/// <c>numReplicas</c>-th index starting at <c>r</c>.</para>
/// <para>Call <see cref="SetEpoch"/> at the start of every epoch; otherwise every epoch has the same order (as in PyTorch).</para>
/// </remarks>
public sealed class DistributedSampler : IEnumerable<long>
{
    /// <summary>Creates the sampler of rank <paramref name="rank"/> of <paramref name="numReplicas"/>.</summary>
    /// <param name="datasetSize">The number of samples N in the dataset, at least 0.</param>
    /// <param name="numReplicas">The number of ranks, at least 1.</param>
    /// <param name="rank">This rank, in [0, numReplicas - 1].</param>
    /// <param name="shuffle">Whether each epoch uses a seeded random permutation.</param>
    /// <param name="seed">The base seed of the permutation; must be the same on every rank.</param>
    /// <param name="dropLast">Drop the tail that does not divide evenly instead of padding.</param>
    /// <exception cref="ArgumentOutOfRangeException">A size is negative, or the rank is out of range.</exception>
    public DistributedSampler(long datasetSize, int numReplicas, int rank, bool shuffle = true, long seed = 0, bool dropLast = false)
    {
        if (datasetSize < 0)
            throw new ArgumentOutOfRangeException(nameof(datasetSize), datasetSize, $"The dataset size must be non-negative, got {datasetSize}.");
        if (numReplicas < 1)
            throw new ArgumentOutOfRangeException(nameof(numReplicas), numReplicas, $"num_replicas must be at least 1, got {numReplicas}.");
        if (rank < 0 || rank >= numReplicas)
            throw new ArgumentOutOfRangeException(nameof(rank), rank, $"Invalid rank {rank}, rank should be in the interval [0, {numReplicas - 1}]");

        DatasetSize = datasetSize;
        NumReplicas = numReplicas;
        Rank = rank;
        Shuffle = shuffle;
        Seed = seed;
        DropLast = dropLast;
        // PyTorch: ceil((N - R) / R) with drop_last and N % R != 0, else ceil(N / R). The former equals floor(N / R)
        // for every N (also N < R, where Python's math.ceil of a fraction in (-1, 0) is 0).
        NumSamples = dropLast && datasetSize % numReplicas != 0
            ? datasetSize / numReplicas
            : (datasetSize + numReplicas - 1) / numReplicas;
        TotalSize = NumSamples * numReplicas;
    }

    /// <summary>The number of samples N in the dataset.</summary>
    public long DatasetSize { get; }

    /// <summary>The number of ranks the dataset is split among.</summary>
    public int NumReplicas { get; }

    /// <summary>The rank this sampler yields indices for.</summary>
    public int Rank { get; }

    /// <summary>Whether each epoch is a seeded random permutation.</summary>
    public bool Shuffle { get; }

    /// <summary>The base seed; epoch <c>e</c> uses <c>seed + e</c>.</summary>
    public long Seed { get; }

    /// <summary>Whether the uneven tail is dropped instead of padded.</summary>
    public bool DropLast { get; }

    /// <summary>The epoch whose order is yielded (<see cref="SetEpoch"/>); 0 at first.</summary>
    public long Epoch { get; private set; }

    /// <summary>Indices per rank per epoch (<c>len(sampler)</c>).</summary>
    public long NumSamples { get; }

    /// <summary>Indices over all ranks per epoch: <see cref="NumSamples"/> × <see cref="NumReplicas"/>.</summary>
    public long TotalSize { get; }

    /// <summary>Sets the epoch, which changes the permutation when shuffling (<c>set_epoch</c>).</summary>
    public void SetEpoch(long epoch) => Epoch = epoch;

    /// <summary>This rank's indices for the current epoch, as an array.</summary>
    public long[] Indices()
    {
        long[] all = Order();
        var mine = new long[NumSamples];
        // Padding cycles through the order (indices += indices[:padding], repeated as often as needed);
        // drop_last only cuts. Either way position k of the padded list is order[k % N].
        for (long i = 0; i < NumSamples; i++)
        {
            long k = Rank + i * NumReplicas;
            mine[i] = all[k % all.Length];
        }
        return mine;
    }

    /// <summary>
    /// This rank's indices for the current epoch as an int64 tensor ([<see cref="NumSamples"/>], on the CPU), ready for
    /// <c>index_select</c>: batch <c>k</c> of size <c>b</c> is <c>narrow(0, k·b, b)</c>. The caller owns it.
    /// </summary>
    public Tensor AsTensor() => tensor(Indices());

    /// <inheritdoc/>
    public IEnumerator<long> GetEnumerator() => ((IEnumerable<long>)Indices()).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    private long[] Order()
    {
        if (!Shuffle || DatasetSize == 0)
        {
            var order = new long[DatasetSize];
            for (long i = 0; i < DatasetSize; i++)
                order[i] = i;
            return order;
        }
        using var generator = new Generator(unchecked((ulong)(Seed + Epoch)));
        using var perm = randperm(DatasetSize, generator: generator);
        return perm.data<long>().ToArray();
    }
}
