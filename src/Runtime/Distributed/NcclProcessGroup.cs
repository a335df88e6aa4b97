using System.Runtime.InteropServices;
using ModelDsl.Runtime.Distributed.Nccl;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// The ranks of a job over NCCL (<c>libnccl.so.2</c>, bound at run time), for CUDA tensors: the communicator is
/// created the way Horovod does it, rank 0's <c>ncclGetUniqueId</c> broadcast over the MPI group, then
/// <c>ncclCommInitRank</c> on every rank.
/// </summary>
/// <remarks>
/// CPU tensors (small control values such as the trainer's votes and metric sums) are not NCCL's: they go over the
/// bootstrap MPI group (<see cref="ProcessGroup.HostGroup"/>), with MPI's semantics; every other collective is NCCL's.
/// Collectives are enqueued on the CUDA default stream, the stream TorchSharp's kernels run on (it has no stream
/// API), so they are ordered after the kernels that produced the tensor and before those that use it; a blocking
/// collective returns once enqueued, and <see cref="Work.Wait"/> synchronises the device. Each rank uses the CUDA
/// device <see cref="ProcessGroup.Create"/> was given, or, for a device without an index, its local rank's device.
/// </remarks>
public sealed unsafe class NcclProcessGroup : ProcessGroup
{
    private readonly NcclLibrary _library;
    private readonly ProcessGroup _bootstrap;
    private readonly Device _device;
    private IntPtr _comm;

    /// <summary>Creates the NCCL communicator of the ranks of <paramref name="bootstrap"/> on <paramref name="device"/>.</summary>
    /// <param name="bootstrap">The group the unique id travels over (the MPI world); it stays owned by the caller.</param>
    /// <param name="device">A CUDA device.</param>
    /// <exception cref="ArgumentException"><paramref name="device"/> is not a CUDA device.</exception>
    /// <exception cref="DistributedException">NCCL is missing, CUDA is not available, or NCCL fails to initialise.</exception>
    public NcclProcessGroup(ProcessGroup bootstrap, Device device)
    {
        ArgumentNullException.ThrowIfNull(bootstrap);
        ArgumentNullException.ThrowIfNull(device);
        if (device.type != DeviceType.CUDA)
            throw new ArgumentException($"The NCCL backend works on CUDA devices, but the device is {device}; use the MPI backend for CPU training.", nameof(device));
        _library = NcclLibrary.Load();
        if (!cuda.is_available())
            throw new DistributedException(
                "The NCCL backend needs CUDA, but TorchSharp sees no CUDA device (a CPU build of libtorch, or no GPU). Build with -p:ModelDslCuda=true on a machine with a GPU, or use the MPI backend.");
        _bootstrap = bootstrap;
        int index = device.index >= 0 ? device.index : (DistributedEnvironment.Current?.LocalRank ?? bootstrap.Rank) % Math.Max(1, cuda.device_count());
        _device = new Device(DeviceType.CUDA, index);
        CudaRuntime.SetDevice(index);

        var id = new NcclUniqueId();
        if (bootstrap.Rank == 0)
            _library.Check(_library.GetUniqueId(&id), "ncclGetUniqueId");
        using (var bytes = empty(128, ScalarType.Byte))
        {
            Buffer.MemoryCopy(id.Internal, (void*)TensorMemory.DataPointer(bytes), 128, 128);
            bootstrap.Broadcast(bytes, 0);
            Buffer.MemoryCopy((void*)TensorMemory.DataPointer(bytes), id.Internal, 128, 128);
        }
        IntPtr comm;
        _library.Check(_library.CommInitRank(&comm, bootstrap.WorldSize, id, bootstrap.Rank), "ncclCommInitRank");
        _comm = comm;
    }

    /// <inheritdoc/>
    public override int Rank => _bootstrap.Rank;

    /// <inheritdoc/>
    public override int WorldSize => _bootstrap.WorldSize;

    /// <inheritdoc/>
    public override string Backend => "nccl";

    /// <inheritdoc/>
    public override void Abort(string reason, int errorCode = 1) => _bootstrap.Abort(reason, errorCode);

    /// <summary>CPU tensors go over the MPI world the communicator was built on (PyTorch's default group: gloo for CPU, NCCL for CUDA).</summary>
    protected override ProcessGroup HostGroup => _bootstrap;

    /// <summary>Throws the error for a tensor NCCL cannot reach (anything not on a CUDA device).</summary>
    internal static void CheckOnCuda(Tensor tensor, string operation)
    {
        if (tensor.device_type != DeviceType.CUDA)
            throw new ArgumentException(
                $"{operation}: the NCCL backend works on CUDA tensors only, but this tensor is on {tensor.device}; move it with .cuda() or use the MPI backend.",
                nameof(tensor));
    }

    /// <summary>NCCL's datatype for <paramref name="dtype"/>.</summary>
    internal static int DataType(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => NcclLibrary.Float32,
        ScalarType.Float64 => NcclLibrary.Float64,
        ScalarType.Float16 => NcclLibrary.Float16,
        ScalarType.BFloat16 => NcclLibrary.BFloat16,
        ScalarType.Int64 => NcclLibrary.Int64,
        ScalarType.Int32 => NcclLibrary.Int32,
        ScalarType.Int8 => NcclLibrary.Int8,
        ScalarType.Byte => NcclLibrary.Uint8,
        _ => throw new ArgumentException($"all_reduce: NCCL has no datatype for {TensorMemory.Name(dtype)}."),
    };

    /// <inheritdoc/>
    protected override void AllReduceCore(Tensor tensor, ReduceOp op)
    {
        CheckOnCuda(tensor, "all_reduce");
        int type = DataType(tensor.dtype);
        StagedInPlace(tensor, tensor.is_contiguous() ? tensor : tensor.contiguous().DetachFromDisposeScope(), staging =>
        {
            void* p = (void*)TensorMemory.DataPointer(staging);
            int ncclOp = op switch { ReduceOp.Max => NcclLibrary.OpMax, ReduceOp.Min => NcclLibrary.OpMin, _ => NcclLibrary.OpSum };
            _library.Check(_library.AllReduce(p, p, (nuint)staging.numel(), type, ncclOp, _comm, IntPtr.Zero), "ncclAllReduce");
            if (op == ReduceOp.Avg)
                DivideForAverage(staging, WorldSize);
        });
    }

    /// <inheritdoc/>
    protected override Work AllReduceAsyncCore(Tensor tensor, ReduceOp op)
    {
        AllReduceCore(tensor, op);
        var device = _device;
        return new Work.Completed(() => cuda.synchronize(device));
    }

    /// <inheritdoc/>
    protected override void BroadcastCore(Tensor tensor, int root)
    {
        CheckOnCuda(tensor, "broadcast");
        StagedInPlace(tensor, tensor.is_contiguous() ? tensor : tensor.contiguous().DetachFromDisposeScope(), staging =>
        {
            void* p = (void*)TensorMemory.DataPointer(staging);
            _library.Check(_library.Broadcast(p, p, (nuint)TensorMemory.ByteCount(staging), NcclLibrary.Uint8, root, _comm, IntPtr.Zero), "ncclBroadcast");
        });
    }

    /// <inheritdoc/>
    protected override Tensor[] AllGatherCore(Tensor tensor)
    {
        CheckOnCuda(tensor, "all_gather");
        // The sizes are agreed over the bootstrap group first, as MpiProcessGroup does, so a mismatch is an error
        // on every rank instead of an overrun.
        using (var meta = torch.tensor(new long[] { tensor.numel(), (long)tensor.dtype }))
        {
            var all = _bootstrap.AllGather(meta);
            try
            {
                for (int r = 0; r < all.Length; r++)
                {
                    var row = all[r].data<long>().ToArray();
                    if (row[0] != tensor.numel() || row[1] != (long)tensor.dtype)
                        throw new DistributedException(
                            $"all_gather: the ranks' tensors differ: rank {r} has {row[0]} elements of {TensorMemory.Name((ScalarType)row[1])}, "
                            + $"rank {Rank} has {tensor.numel()} elements of {TensorMemory.Name(tensor.dtype)}.");
                }
            }
            finally
            {
                foreach (var t in all)
                    t.Dispose();
            }
        }
        long[] shape = new long[tensor.dim() + 1];
        shape[0] = WorldSize;
        Array.Copy(tensor.shape, 0, shape, 1, tensor.dim());
        Tensor source = tensor.is_contiguous() ? tensor : tensor.contiguous().DetachFromDisposeScope();
        try
        {
            using var gathered = empty(shape, tensor.dtype, tensor.device);
            _library.Check(_library.AllGather((void*)TensorMemory.DataPointer(source), (void*)TensorMemory.DataPointer(gathered),
                (nuint)TensorMemory.ByteCount(source), NcclLibrary.Uint8, _comm, IntPtr.Zero), "ncclAllGather");
            return gathered.unbind(0).Select(t => t.DetachFromDisposeScope()).ToArray();
        }
        finally
        {
            if (!ReferenceEquals(source, tensor))
                source.Dispose();
        }
    }

    /// <inheritdoc/>
    protected override void ReduceScatterCore(Tensor output, Tensor input, ReduceOp op)
    {
        CheckOnCuda(input, "reduce_scatter_tensor");
        CheckOnCuda(output, "reduce_scatter_tensor");
        int type = DataType(input.dtype);
        Tensor source = input.is_contiguous() ? input : input.contiguous().DetachFromDisposeScope();
        int ncclOp = op switch { ReduceOp.Max => NcclLibrary.OpMax, ReduceOp.Min => NcclLibrary.OpMin, _ => NcclLibrary.OpSum };
        Staged(output, input, source, output.dtype, (from, into) =>
        {
            _library.Check(_library.ReduceScatter((void*)TensorMemory.DataPointer(from), (void*)TensorMemory.DataPointer(into),
                (nuint)output.numel(), type, ncclOp, _comm, IntPtr.Zero), "ncclReduceScatter");
            if (op == ReduceOp.Avg)
                DivideForAverage(into, WorldSize);
        });
    }

    /// <inheritdoc/>
    protected override void AllGatherIntoCore(Tensor output, Tensor input)
    {
        CheckOnCuda(input, "all_gather_into_tensor");
        CheckOnCuda(output, "all_gather_into_tensor");
        Tensor source = input.is_contiguous() ? input : input.contiguous().DetachFromDisposeScope();
        Staged(output, input, source, output.dtype, (from, into) =>
            _library.Check(_library.AllGather((void*)TensorMemory.DataPointer(from), (void*)TensorMemory.DataPointer(into),
                (nuint)TensorMemory.ByteCount(from), NcclLibrary.Uint8, _comm, IntPtr.Zero), "ncclAllGather"));
    }

    /// <inheritdoc/>
    protected override void BarrierCore()
    {
        cuda.synchronize(_device);
        _bootstrap.Barrier();
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (_comm != IntPtr.Zero)
        {
            _library.CommDestroy(_comm);
            _comm = IntPtr.Zero;
        }
    }

    /// <summary>The one CUDA runtime call TorchSharp does not expose: choosing the device NCCL initialises on.</summary>
    private static class CudaRuntime
    {
        public static void SetDevice(int index)
        {
            foreach (string name in new[] { "libcudart.so.12", "libcudart.so.11.0", "libcudart.so" })
            {
                if (!NativeLibrary.TryLoad(name, typeof(CudaRuntime).Assembly, null, out IntPtr handle)
                    && !NativeLibrary.TryLoad(name, out handle))
                    continue;
                var setDevice = (delegate* unmanaged<int, int>)NativeLibrary.GetExport(handle, "cudaSetDevice");
                int code = setDevice(index);
                if (code != 0)
                    throw new DistributedException($"cudaSetDevice({index}) failed with CUDA error {code}.");
                return;
            }
            // Without a loadable CUDA runtime NCCL initialises on the current device (0), which is right for one GPU per machine.
        }
    }
}
