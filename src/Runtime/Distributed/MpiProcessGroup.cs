using ModelDsl.Runtime.Distributed.Mpi;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// The ranks of <c>MPI_COMM_WORLD</c> over Open MPI (<c>libmpi.so.40</c>, bound at run time): CPU tensors, on one
/// machine or across machines.
/// </summary>
/// <remarks>
/// <para>The first group created in a process initialises MPI (<c>MPI_Init_thread</c>, asking for
/// <c>MPI_THREAD_MULTIPLE</c>); MPI is finalized when the process exits with code 0 and the job is aborted
/// (<c>MPI_Abort</c>) when it exits otherwise or on an unhandled exception, which prints one line naming the
/// rank and the exception first.</para>
/// <para>float16 and bfloat16 have no MPI datatype and no built-in MPI sum: they are reduced through a float32 copy
/// (exact for max and min; for sum and mean a single rounding at the end, more accurate than summing in 16 bits)
/// rather than a user-defined <c>MPI_Op</c>, whose callback would cross into managed code for every chunk.</para>
/// </remarks>
public sealed unsafe class MpiProcessGroup : ProcessGroup
{
    // MPI counts are C ints; larger tensors are reduced in pieces of this many elements.
    internal const long MaxElementsPerCall = 1L << 30;
    private readonly MpiLibrary _library;

    /// <summary>Joins <c>MPI_COMM_WORLD</c>, initialising MPI if this is the first group of the process.</summary>
    /// <exception cref="DistributedException">Open MPI is missing, is not Open MPI, or fails to initialise.</exception>
    public MpiProcessGroup()
    {
        (_library, Rank, WorldSize) = MpiRuntime.EnsureInitialized();
    }

    /// <inheritdoc/>
    public override int Rank { get; }

    /// <inheritdoc/>
    public override int WorldSize { get; }

    /// <inheritdoc/>
    public override string Backend => "mpi";

    /// <summary>The first line of the library's version, e.g. <c>Open MPI v4.1.4, package: Debian OpenMPI, …</c>.</summary>
    public string LibraryVersion => _library.Version.Split('\n', 2)[0].Trim();

    /// <inheritdoc/>
    public override void Abort(string reason, int errorCode = 1) => MpiRuntime.Abort(reason, errorCode);

    /// <inheritdoc/>
    protected override void AllReduceCore(Tensor tensor, ReduceOp op)
    {
        CheckOnCpu(tensor, "all_reduce");
        StagedInPlace(tensor, Stage(tensor), staging =>
        {
            IntPtr data = TensorMemory.DataPointer(staging);
            long count = staging.numel();
            IntPtr type = DataType(staging.dtype);
            IntPtr mpiOp = Op(op);
            // Zero elements still make the call, so every rank takes part in the same sequence of collectives.
            long done = 0;
            do
            {
                int n = (int)Math.Min(count - done, MaxElementsPerCall);
                byte* p = (byte*)data + done * staging.element_size();
                _library.Check(_library.Allreduce((void*)MpiLibrary.InPlace, count == 0 ? null : p, n, type, mpiOp, _library.CommWorld),
                    "MPI_Allreduce");
                done += n;
            }
            while (done < count);
            if (op == ReduceOp.Avg)
                DivideForAverage(staging, WorldSize);
        });
    }

    /// <inheritdoc/>
    protected override Work AllReduceAsyncCore(Tensor tensor, ReduceOp op)
    {
        CheckOnCpu(tensor, "all_reduce");
        Tensor staging = Stage(tensor);
        IntPtr data = TensorMemory.DataPointer(staging);
        long count = staging.numel();
        IntPtr type = DataType(staging.dtype);
        IntPtr mpiOp = Op(op);
        int calls = (int)Math.Max(1, (count + MaxElementsPerCall - 1) / MaxElementsPerCall);
        var requests = new IntPtr[calls];
        for (int i = 0; i < calls; i++)
        {
            long offset = i * MaxElementsPerCall;
            int n = (int)Math.Min(count - offset, MaxElementsPerCall);
            byte* p = count == 0 ? null : (byte*)data + offset * staging.element_size();
            fixed (IntPtr* request = &requests[i])
                _library.Check(_library.Iallreduce((void*)MpiLibrary.InPlace, p, n, type, mpiOp, _library.CommWorld, request),
                    "MPI_Iallreduce");
        }
        return new MpiWork(_library, requests, tensor, staging, op == ReduceOp.Avg, WorldSize);
    }

    /// <inheritdoc/>
    protected override void BroadcastCore(Tensor tensor, int root)
    {
        CheckOnCpu(tensor, "broadcast");
        StagedInPlace(tensor, tensor.is_contiguous() ? tensor : tensor.contiguous().DetachFromDisposeScope(), staging =>
        {
            IntPtr data = TensorMemory.DataPointer(staging);
            long bytes = TensorMemory.ByteCount(staging);
            long done = 0;
            do
            {
                int n = (int)Math.Min(bytes - done, MaxElementsPerCall);
                _library.Check(_library.Bcast(bytes == 0 ? null : (byte*)data + done, n, _library.Byte, root, _library.CommWorld), "MPI_Bcast");
                done += n;
            }
            while (done < bytes);
        });
    }

    /// <inheritdoc/>
    protected override Tensor[] AllGatherCore(Tensor tensor)
    {
        CheckOnCpu(tensor, "all_gather");
        // Agree on the size first: gathering into buffers sized from this rank's tensor when another rank sends more
        // would overrun them. Every rank sees the same table, so every rank throws the same error.
        var table = new long[2 * WorldSize];
        long[] mine = { tensor.numel(), (long)tensor.dtype };
        fixed (long* send = mine)
        fixed (long* receive = table)
            _library.Check(_library.Allgather(send, 2, _library.Int64, receive, 2, _library.Int64, _library.CommWorld), "MPI_Allgather");
        for (int r = 0; r < WorldSize; r++)
        {
            if (table[2 * r] != mine[0] || table[2 * r + 1] != mine[1])
                throw new DistributedException(
                    $"all_gather: the ranks' tensors differ: rank {r} has {table[2 * r]} elements of {TensorMemory.Name((ScalarType)table[2 * r + 1])}, "
                    + $"rank {Rank} has {mine[0]} elements of {TensorMemory.Name(tensor.dtype)}; every rank must pass a tensor of the same size and dtype.");
        }

        long bytes = TensorMemory.ByteCount(tensor);
        if (bytes > int.MaxValue)
            throw new ArgumentException($"all_gather: {bytes} bytes per rank is more than MPI's 2 GiB limit for one call.", nameof(tensor));
        Tensor source = tensor.is_contiguous() ? tensor : tensor.contiguous().DetachFromDisposeScope();
        try
        {
            long[] shape = new long[tensor.dim() + 1];
            shape[0] = WorldSize;
            Array.Copy(tensor.shape, 0, shape, 1, tensor.dim());
            using var gathered = empty(shape, tensor.dtype, tensor.device);
            if (bytes > 0)
            {
                _library.Check(_library.Allgather((void*)TensorMemory.DataPointer(source), (int)bytes, _library.Byte,
                    (void*)TensorMemory.DataPointer(gathered), (int)bytes, _library.Byte, _library.CommWorld), "MPI_Allgather");
            }
            // The views keep the gathered storage alive after this handle is disposed.
            return gathered.unbind(0).Select(t => t.DetachFromDisposeScope()).ToArray();
        }
        finally
        {
            if (!ReferenceEquals(source, tensor))
                source.Dispose();
            GC.KeepAlive(tensor);
        }
    }

    /// <inheritdoc/>
    protected override void ReduceScatterCore(Tensor output, Tensor input, ReduceOp op)
    {
        CheckOnCpu(input, "reduce_scatter_tensor");
        CheckOnCpu(output, "reduce_scatter_tensor");
        long count = output.numel();
        if (count > int.MaxValue)
            throw new ArgumentException($"reduce_scatter_tensor: {count} elements per rank is more than MPI's limit for one call ({int.MaxValue}).", nameof(output));
        // float16/bfloat16 through float32 copies, as AllReduce does; a non-contiguous tensor through a contiguous one.
        Tensor source = Stage(input);
        Staged(output, input, source, source.dtype, (from, into) =>
        {
            // Zero elements per rank are zero elements on every rank (the sizes must agree): no call, as all_gather does.
            if (count > 0)
            {
                _library.Check(_library.ReduceScatterBlock((void*)TensorMemory.DataPointer(from), (void*)TensorMemory.DataPointer(into), (int)count,
                    DataType(from.dtype), Op(op), _library.CommWorld), "MPI_Reduce_scatter_block");
            }
            if (op == ReduceOp.Avg)
                DivideForAverage(into, WorldSize);
        });
    }

    /// <inheritdoc/>
    protected override void AllGatherIntoCore(Tensor output, Tensor input)
    {
        CheckOnCpu(input, "all_gather_into_tensor");
        CheckOnCpu(output, "all_gather_into_tensor");
        long bytes = TensorMemory.ByteCount(input);
        if (bytes > int.MaxValue)
            throw new ArgumentException($"all_gather_into_tensor: {bytes} bytes per rank is more than MPI's 2 GiB limit for one call.", nameof(input));
        Tensor source = input.is_contiguous() ? input : input.contiguous().DetachFromDisposeScope();
        Staged(output, input, source, output.dtype, (from, into) =>
        {
            if (bytes > 0)
            {
                _library.Check(_library.Allgather((void*)TensorMemory.DataPointer(from), (int)bytes, _library.Byte,
                    (void*)TensorMemory.DataPointer(into), (int)bytes, _library.Byte, _library.CommWorld), "MPI_Allgather");
            }
        });
    }

    /// <inheritdoc/>
    protected override void BarrierCore() => _library.Check(_library.Barrier(_library.CommWorld), "MPI_Barrier");

    /// <summary>
    /// The tensor MPI works on: the tensor itself when it is contiguous and has an MPI datatype; otherwise a float32
    /// copy (float16, bfloat16) or a contiguous copy, kept out of any dispose scope because it may outlive the
    /// caller's scope inside a <see cref="Work"/>.
    /// </summary>
    private static Tensor Stage(Tensor tensor)
    {
        using var _ = no_grad();
        if (tensor.dtype is ScalarType.Float16 or ScalarType.BFloat16)
        {
            // The widened copy is held in a variable (and disposed): a temporary can be finalized by the GC while
            // libtorch still reads it, which segfaulted the collectives under load.
            using var wide = tensor.to(ScalarType.Float32);
            return wide.contiguous().DetachFromDisposeScope();
        }
        return tensor.is_contiguous() ? tensor : tensor.contiguous().DetachFromDisposeScope();
    }

    private static void CheckOnCpu(Tensor tensor, string operation)
    {
        // A device pointer handed to an MPI that is not CUDA-aware is dereferenced on the host: a crash, not an error.
        if (tensor.device_type != DeviceType.CPU)
            throw new ArgumentException(
                $"{operation}: the MPI backend works on CPU tensors, but this tensor is on {tensor.device}; use the NCCL backend for CUDA tensors.",
                nameof(tensor));
    }

    private IntPtr DataType(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => _library.Float,
        ScalarType.Float64 => _library.Double,
        ScalarType.Int64 => _library.Int64,
        ScalarType.Int32 => _library.Int32,
        ScalarType.Int16 => _library.Int16,
        ScalarType.Int8 => _library.Int8,
        ScalarType.Byte => _library.UInt8,
        _ => throw new ArgumentException($"no MPI datatype for {TensorMemory.Name(dtype)}."),
    };

    private IntPtr Op(ReduceOp op) => op switch
    {
        ReduceOp.Sum or ReduceOp.Avg => _library.OpSum,
        ReduceOp.Max => _library.OpMax,
        ReduceOp.Min => _library.OpMin,
        _ => throw new ArgumentOutOfRangeException(nameof(op)),
    };
}
