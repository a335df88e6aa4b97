using System;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Distributed.Mpi;

/// <summary>
/// One <c>MPI_Iallreduce</c> (or a few, for tensors above 2^30 elements) in flight, and what must happen once they
/// end: the division of an average and the copy back from a staging tensor (a float32 copy of a float16/bfloat16
/// tensor, or a contiguous copy of a strided one).
/// </summary>
internal sealed unsafe class MpiWork : Work
{
    private readonly MpiLibrary _library;
    private readonly IntPtr[] _requests;
    private readonly Tensor _target;
    private readonly Tensor _staging;
    private readonly bool _average;
    private readonly int _worldSize;
    private bool _finished;

    public MpiWork(MpiLibrary library, IntPtr[] requests, Tensor target, Tensor staging, bool average, int worldSize)
    {
        _library = library;
        _requests = requests;
        _target = target;
        _staging = staging;
        _average = average;
        _worldSize = worldSize;
    }

    public override void Wait()
    {
        if (_finished)
            return;
        for (int i = 0; i < _requests.Length; i++)
        {
            if (_requests[i] == IntPtr.Zero)
                continue;
            fixed (IntPtr* request = &_requests[i])
                _library.Check(_library.Wait(request, null), "MPI_Wait (all_reduce)");
        }
        Finish();
    }

    public override bool IsCompleted()
    {
        if (_finished)
            return true;
        for (int i = 0; i < _requests.Length; i++)
        {
            if (_requests[i] == IntPtr.Zero)
                continue;
            int flag = 0;
            fixed (IntPtr* request = &_requests[i])
                _library.Check(_library.Test(request, &flag, null), "MPI_Test (all_reduce)");
            if (flag == 0)
                return false;
        }
        Finish();
        return true;
    }

    private void Finish()
    {
        _finished = true;
        // MPI sets a completed request to MPI_REQUEST_NULL, a non-zero global in Open MPI; zero marks it done here.
        Array.Clear(_requests);
        if (_average)
            ProcessGroup.DivideForAverage(_staging, _worldSize);
        if (!ReferenceEquals(_staging, _target))
        {
            using (no_grad())
                _target.copy_(_staging);
            _staging.Dispose();
        }
    }
}
