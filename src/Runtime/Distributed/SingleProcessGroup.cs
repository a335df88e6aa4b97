using System;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// The group of a process that runs alone (world size 1, rank 0): every collective is the identity, so code written
/// for N ranks runs unchanged in one process, without MPI installed.
/// </summary>
public sealed class SingleProcessGroup : ProcessGroup
{
    /// <inheritdoc/>
    public override int Rank => 0;

    /// <inheritdoc/>
    public override int WorldSize => 1;

    /// <inheritdoc/>
    public override string Backend => "single";

    /// <summary>Prints <c>error: reason</c> and exits the process with <paramref name="errorCode"/>. Never returns.</summary>
    public override void Abort(string reason, int errorCode = 1)
    {
        Console.Out.Flush();
        Console.Error.WriteLine($"error: {reason}");
        Environment.Exit(errorCode == 0 ? 1 : errorCode);
    }

    /// <inheritdoc/>
    protected override void AllReduceCore(Tensor tensor, ReduceOp op)
    {
        // Sum, max and min of one value are that value; the mean divides by 1.
    }

    /// <inheritdoc/>
    protected override Work AllReduceAsyncCore(Tensor tensor, ReduceOp op) => new Work.Completed();

    /// <inheritdoc/>
    protected override void BroadcastCore(Tensor tensor, int root)
    {
    }

    /// <inheritdoc/>
    protected override Tensor[] AllGatherCore(Tensor tensor)
    {
        using var _ = no_grad();
        return new[] { tensor.clone() };
    }

    /// <inheritdoc/>
    protected override void ReduceScatterCore(Tensor output, Tensor input, ReduceOp op)
    {
        // One rank: its chunk is the whole input, and every reduction of one value is that value.
        using var _ = no_grad();
        using var flat = input.reshape(output.shape);
        output.copy_(flat);
    }

    /// <inheritdoc/>
    protected override void AllGatherIntoCore(Tensor output, Tensor input)
    {
        using var _ = no_grad();
        using var flat = input.reshape(output.shape);
        output.copy_(flat);
    }

    /// <inheritdoc/>
    protected override void BarrierCore()
    {
    }
}
