using System.Collections.Generic;
using ModelDsl.Runtime.Distributed;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// Rank 0 of a world whose ranks all hold the same tensors, in one process: a sum multiplies by the world size, every
/// other reduction is the identity, gathers repeat this rank's tensor. It records each collective: by name in
/// <see cref="Calls"/>, and all-reduces by buffer (numbered in order of first use) in <see cref="Reduced"/>.
/// </summary>
internal sealed class LoopbackGroup : ProcessGroup
{
    private readonly List<IntPtr> _buffers = new();

    public LoopbackGroup(int worldSize) => WorldSize = worldSize;

    /// <summary>Each all-reduce's buffer, numbered in the order the buffers were first reduced.</summary>
    public List<int> Reduced { get; } = new();

    /// <summary>Whether each all-reduce was the non-blocking one.</summary>
    public List<bool> NonBlocking { get; } = new();

    /// <summary>Every collective, in order: <c>all_reduce Sum</c>, <c>all_reduce_async Max</c>, <c>broadcast 1</c>, <c>all_gather</c>, …</summary>
    public List<string> Calls { get; } = new();

    public override int Rank => 0;

    public override int WorldSize { get; }

    public override string Backend => "loopback";

    public override void Abort(string reason, int errorCode = 1) => throw new InvalidOperationException(reason);

    protected override void AllReduceCore(Tensor tensor, ReduceOp op)
    {
        Record(tensor, nonBlocking: false);
        Calls.Add($"all_reduce {op}");
        Reduce(tensor, op);
    }

    protected override Work AllReduceAsyncCore(Tensor tensor, ReduceOp op)
    {
        Record(tensor, nonBlocking: true);
        Calls.Add($"all_reduce_async {op}");
        Reduce(tensor, op);
        return new Work.Completed();
    }

    private void Reduce(Tensor tensor, ReduceOp op)
    {
        if (op == ReduceOp.Sum) tensor.mul_(WorldSize);
    }

    private void Record(Tensor tensor, bool nonBlocking)
    {
        IntPtr key = tensor.Handle;
        int bucket = _buffers.IndexOf(key);
        if (bucket < 0)
        {
            _buffers.Add(key);
            bucket = _buffers.Count - 1;
        }
        Reduced.Add(bucket);
        NonBlocking.Add(nonBlocking);
    }

    protected override void BroadcastCore(Tensor tensor, int root) => Calls.Add($"broadcast {root}");

    protected override Tensor[] AllGatherCore(Tensor tensor)
    {
        Calls.Add("all_gather");
        return Enumerable.Range(0, WorldSize).Select(_ => tensor.clone()).ToArray();
    }

    protected override void ReduceScatterCore(Tensor output, Tensor input, ReduceOp op)
    {
        Calls.Add($"reduce_scatter {op}");
        using var mine = input.narrow(0, Rank * output.numel(), output.numel());
        output.copy_(mine.view(output.shape));
        Reduce(output, op);
    }

    protected override void AllGatherIntoCore(Tensor output, Tensor input)
    {
        Calls.Add("all_gather_into");
        using var repeated = cat(Enumerable.Repeat(input.reshape(-1), WorldSize).ToArray());
        output.copy_(repeated.view(output.shape));
    }

    protected override void BarrierCore() => Calls.Add("barrier");
}
