using System;
namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// A collective started by <see cref="ProcessGroup.AllReduceAsync"/>, after <c>torch.distributed.Work</c>: the tensor
/// holds the result once <see cref="Wait"/> returns. Until then the tensor must not be read, written or disposed.
/// </summary>
/// <remarks>
/// Disposing a work that is still in flight waits for it first: the library is writing into the tensor's memory,
/// so releasing it early would corrupt the heap.
/// </remarks>
public abstract class Work : IDisposable
{
    private bool _disposed;

    /// <summary>Blocks until the collective has finished and its result is in the tensor.</summary>
    public abstract void Wait();

    /// <summary>
    /// Whether the collective has finished, without blocking (<c>is_completed()</c>). With MPI, asking also drives
    /// the library's progress engine, so polling while computing lets a transfer advance.
    /// </summary>
    public abstract bool IsCompleted();

    /// <summary>Waits for the collective if it is still in flight, then releases what it holds.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        Dispose(disposing: true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the work's resources; the base implementation waits for the collective.</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (disposing)
            Wait();
    }

    /// <summary>A work that is already done (a single-process group, an empty tensor).</summary>
    internal sealed class Completed : Work
    {
        private readonly Action? _finish;
        private bool _finished;

        public Completed(Action? finish = null) => _finish = finish;

        public override void Wait()
        {
            if (_finished)
                return;
            _finished = true;
            _finish?.Invoke();
        }

        public override bool IsCompleted() => true;
    }
}
