using System.Runtime.InteropServices;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// Keeping the replicas of a model identical across ranks, as PyTorch's <c>DistributedDataParallel</c> does at
/// construction (parameter shapes checked across ranks, then parameters and buffers broadcast from rank 0), and
/// checking afterwards that they still are (an all-gathered checksum of the bytes of every parameter and buffer).
/// </summary>
public static class DataParallel
{
    /// <summary>
    /// Makes every rank's parameters, then buffers (e.g. BatchNorm's running statistics), bitwise equal to rank 0's.
    /// First checks that every rank has the same parameters and buffers (names, dtypes, shapes), so a mismatch is a
    /// clear error on every rank instead of a broadcast of the wrong size.
    /// </summary>
    /// <exception cref="DistributedException">The ranks' models differ in structure.</exception>
    public static void BroadcastParameters(ProcessGroup group, nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(module);
        var tensors = StateTensors(module);
        CheckSameStructure(group, tensors);
        if (group.WorldSize == 1)
            return;
        using var _ = no_grad();
        foreach (var (_, tensor) in tensors)
            group.Broadcast(tensor, 0);
    }

    /// <summary>A 64-bit checksum of the bytes of every parameter and buffer, in <c>named_parameters</c> then <c>named_buffers</c> order.</summary>
    public static ulong Checksum(nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        ulong hash = 14695981039346656037UL;
        foreach (var (_, tensor) in StateTensors(module))
            hash = Hash(tensor, hash);
        return hash;
    }

    /// <summary>Every rank's <see cref="Checksum"/>, indexed by rank.</summary>
    public static ulong[] GatherChecksums(ProcessGroup group, nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(group);
        using var mine = tensor(new[] { unchecked((long)Checksum(module)) });
        var all = group.AllGather(mine);
        try
        {
            return all.Select(t => unchecked((ulong)t.item<long>())).ToArray();
        }
        finally
        {
            foreach (var t in all)
                t.Dispose();
        }
    }

    /// <summary>Whether every rank's parameters and buffers are bitwise identical (their checksums agree); the report's <c>ranks_in_sync</c>.</summary>
    public static bool RanksInSync(ProcessGroup group, nn.Module module)
    {
        var sums = GatherChecksums(group, module);
        return sums.All(s => s == sums[0]);
    }

    private static List<(string Name, Tensor Tensor)> StateTensors(nn.Module module)
    {
        var list = new List<(string, Tensor)>();
        foreach (var (name, parameter) in module.named_parameters())
            list.Add(("parameter " + name, parameter));
        foreach (var (name, buffer) in module.named_buffers())
            list.Add(("buffer " + name, buffer));
        return list;
    }

    private static void CheckSameStructure(ProcessGroup group, List<(string Name, Tensor Tensor)> tensors)
    {
        ulong signature = 14695981039346656037UL;
        foreach (var (name, t) in tensors)
            signature = HashText($"{name}:{t.dtype}:[{string.Join(",", t.shape)}];", signature);
        using var mine = tensor(new[] { tensors.Count, unchecked((long)signature) });
        var all = group.AllGather(mine);
        try
        {
            for (int r = 0; r < all.Length; r++)
            {
                var row = all[r].data<long>().ToArray();
                if (row[0] != tensors.Count || row[1] != unchecked((long)signature))
                    throw new DistributedException(
                        $"DistributedDataParallel expects the same model on every rank, but rank {r}'s parameters and buffers "
                        + $"({row[0]} tensors) differ from rank {group.Rank}'s ({tensors.Count} tensors) in names, dtypes or shapes.");
            }
        }
        finally
        {
            foreach (var t in all)
                t.Dispose();
        }
    }

    private static ulong HashText(string text, ulong hash)
    {
        foreach (char c in text)
            hash = (hash ^ c) * 1099511628211UL;
        return hash;
    }

    /// <summary>A contiguous CPU copy of <paramref name="tensor"/>; the steps are held in variables, not a bare chain (README.md, "Tensor temporaries").</summary>
    private static Tensor HostCopy(Tensor tensor)
    {
        using var detached = tensor.detach();
        using var onCpu = detached.cpu();
        return onCpu.contiguous();
    }

    private static unsafe ulong Hash(Tensor tensor, ulong hash)
    {
        Tensor host = tensor.device_type == DeviceType.CPU && tensor.is_contiguous() ? tensor : HostCopy(tensor);
        try
        {
            long bytes = TensorMemory.ByteCount(host);
            hash = (hash ^ (ulong)bytes) * 1099511628211UL;
            if (bytes == 0)
                return hash;
            byte* p = (byte*)TensorMemory.DataPointer(host);
            // FNV-1a over 8-byte words (then the tail): cheap, and any flipped bit changes the result.
            long words = bytes / 8;
            ulong* w = (ulong*)p;
            for (long i = 0; i < words; i++)
                hash = (hash ^ w[i]) * 1099511628211UL;
            for (long i = words * 8; i < bytes; i++)
                hash = (hash ^ p[i]) * 1099511628211UL;
            return hash;
        }
        finally
        {
            if (!ReferenceEquals(host, tensor))
                host.Dispose();
            GC.KeepAlive(tensor);
        }
    }
}
