using ModelDsl.Runtime.Distributed.Mpi;
using ModelDsl.Runtime.Distributed.Nccl;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// The ranks of one job and the collectives between them, after <c>torch.distributed.ProcessGroup</c>: every rank
/// calls the same collectives in the same order with tensors of the same size and dtype, and each call returns
/// when this rank's part is done. <see cref="Create"/> picks the implementation: <see cref="MpiProcessGroup"/>
/// (Open MPI), <see cref="NcclProcessGroup"/> (NCCL, CUDA tensors) or, outside a multi-rank job,
/// <see cref="SingleProcessGroup"/>.
/// </summary>
/// <remarks>
/// Collectives work in place on the tensor's memory, on tensors of any shape and size (0 elements included) and of
/// any layout (a non-contiguous tensor is reduced through a contiguous copy). The reducing collectives accept
/// float32, float64, float16, bfloat16, int64, int32, int16, int8 and uint8 (<see cref="AllReduce"/>,
/// <see cref="ReduceScatter"/>); broadcast and all-gather copy bytes and accept any dtype. A mismatch between ranks (a different size or dtype on one rank) is not detected by
/// <see cref="AllReduce"/>, as in PyTorch: checking would cost a second collective on every call.
/// </remarks>
public abstract class ProcessGroup : IDisposable
{
    private bool _disposed;

    /// <summary>This process's rank, 0 ≤ rank &lt; <see cref="WorldSize"/> (<c>get_rank()</c>).</summary>
    public abstract int Rank { get; }

    /// <summary>The number of ranks in the group (<c>get_world_size()</c>).</summary>
    public abstract int WorldSize { get; }

    /// <summary>The backend's name, as <c>torch.distributed.get_backend()</c> spells it: <c>mpi</c>, <c>nccl</c> or <c>single</c>.</summary>
    public abstract string Backend { get; }

    /// <summary>
    /// Creates the process group this process belongs to. Outside a job started by <c>mpirun</c>, a PMI launcher or
    /// <c>srun</c> (see <see cref="DistributedEnvironment"/>) that is a <see cref="SingleProcessGroup"/> of world size 1,
    /// which needs no MPI. Inside one, <paramref name="backend"/> decides: <see cref="CommBackend.Auto"/> takes NCCL
    /// for a CUDA <paramref name="device"/> and Open MPI otherwise.
    /// </summary>
    /// <param name="backend">The collective library.</param>
    /// <param name="device">The device the model's tensors live on.</param>
    /// <exception cref="ArgumentException">NCCL was asked for with a device that is not CUDA.</exception>
    /// <exception cref="DistributedException">The library is missing or failed to initialise.</exception>
    public static ProcessGroup Create(CommBackend backend, Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (!Enum.IsDefined(backend))
            throw new ArgumentOutOfRangeException(nameof(backend), backend, "Unknown communication backend.");
        bool cuda = device.type == DeviceType.CUDA;
        if (backend == CommBackend.Nccl && !cuda)
            throw new ArgumentException(
                $"The NCCL backend reduces CUDA tensors only, but the device is {device}. Use CommBackend.Mpi (or Auto) for CPU training.",
                nameof(backend));

        var environment = DistributedEnvironment.Current;
        if (environment is null)
            return new SingleProcessGroup();

        var world = new MpiProcessGroup();
        if (environment.WorldSize != world.WorldSize)
            throw new DistributedException(
                $"The launcher ({environment.Launcher}) started {environment.WorldSize} ranks, but MPI sees a world of {world.WorldSize}: "
                + "this Open MPI cannot talk to that launcher. Start the program with Open MPI's mpirun (or an srun whose PMI Open MPI supports).");
        bool nccl = backend == CommBackend.Nccl || (backend == CommBackend.Auto && cuda);
        return nccl ? new NcclProcessGroup(world, device) : world;
    }

    /// <summary>
    /// Combines <paramref name="tensor"/> element-wise across all ranks and leaves the result, in place, on every rank
    /// (<c>all_reduce</c>).
    /// </summary>
    /// <exception cref="ArgumentException">The dtype is not one the reducing collectives support.</exception>
    /// <exception cref="DistributedException">The library reported an error.</exception>
    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum)
    {
        CheckUsable();
        TensorMemory.CheckReducible(tensor, "all_reduce");
        CheckOp(op);
        if (HostFor(tensor) is { } host) host.AllReduce(tensor, op);
        else AllReduceCore(tensor, op);
    }

    /// <summary>
    /// Starts <see cref="AllReduce"/> without waiting for it (<c>all_reduce(async_op=True)</c>); the result is in
    /// <paramref name="tensor"/> once <see cref="Work.Wait"/> returns. Every rank must start its non-blocking
    /// collectives in the same order.
    /// </summary>
    /// <exception cref="ArgumentException">The dtype is not one the reducing collectives support.</exception>
    /// <exception cref="DistributedException">The library reported an error.</exception>
    public Work AllReduceAsync(Tensor tensor, ReduceOp op = ReduceOp.Sum)
    {
        CheckUsable();
        TensorMemory.CheckReducible(tensor, "all_reduce");
        CheckOp(op);
        return HostFor(tensor) is { } host ? host.AllReduceAsync(tensor, op) : AllReduceAsyncCore(tensor, op);
    }

    /// <summary>Copies <paramref name="tensor"/> from rank <paramref name="root"/> into the same tensor on every other rank (<c>broadcast(tensor, src)</c>).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="root"/> is not a rank of the group.</exception>
    /// <exception cref="DistributedException">The library reported an error.</exception>
    public void Broadcast(Tensor tensor, int root = 0)
    {
        CheckUsable();
        ArgumentNullException.ThrowIfNull(tensor);
        if (root < 0 || root >= WorldSize)
            throw new ArgumentOutOfRangeException(nameof(root), root, $"Invalid root rank {root}, root should be in the interval [0, {WorldSize - 1}].");
        if (HostFor(tensor) is { } host) host.Broadcast(tensor, root);
        else BroadcastCore(tensor, root);
    }

    /// <summary>
    /// Gathers <paramref name="tensor"/> from every rank (<c>all_gather</c>): element <c>r</c> of the result is rank
    /// <c>r</c>'s tensor, with this rank's shape and dtype. The caller owns the returned tensors.
    /// </summary>
    /// <exception cref="DistributedException">The ranks' tensors differ in element count or dtype, or the library reported an error.</exception>
    public Tensor[] AllGather(Tensor tensor)
    {
        CheckUsable();
        ArgumentNullException.ThrowIfNull(tensor);
        return HostFor(tensor) is { } host ? host.AllGather(tensor) : AllGatherCore(tensor);
    }

    /// <summary>
    /// Reduces <paramref name="input"/> element-wise across all ranks and leaves chunk <c>r</c> of the result in rank
    /// <c>r</c>'s <paramref name="output"/> (<c>reduce_scatter_tensor(output, input, op)</c>): <paramref name="input"/>
    /// holds <see cref="WorldSize"/> consecutive chunks, each with as many elements as <paramref name="output"/>.
    /// Both are read flat, in row-major element order; every reducible dtype is accepted, float16 and bfloat16
    /// included, as by <see cref="AllReduce"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The sizes or dtypes of <paramref name="output"/> and <paramref name="input"/> do not fit, or the dtype is not reducible.</exception>
    /// <exception cref="DistributedException">The library reported an error.</exception>
    public void ReduceScatter(Tensor output, Tensor input, ReduceOp op = ReduceOp.Sum)
    {
        CheckUsable();
        TensorMemory.CheckReducible(input, "reduce_scatter_tensor");
        CheckOp(op);
        CheckChunks(output, input, "reduce_scatter_tensor", "input", "output");
        if (HostFor(input) is { } host) host.ReduceScatter(output, input, op);
        else ReduceScatterCore(output, input, op);
    }

    /// <summary>
    /// Gathers <paramref name="input"/> from every rank into <paramref name="output"/> on every rank
    /// (<c>all_gather_into_tensor(output, input)</c>): chunk <c>r</c> of <paramref name="output"/> (read flat, row-major) is rank
    /// <c>r</c>'s <paramref name="input"/>. Copies bytes, so any dtype works.
    /// </summary>
    /// <exception cref="ArgumentException">The sizes or dtypes of <paramref name="output"/> and <paramref name="input"/> do not fit.</exception>
    /// <exception cref="DistributedException">The library reported an error.</exception>
    public void AllGather(Tensor output, Tensor input)
    {
        CheckUsable();
        ArgumentNullException.ThrowIfNull(input);
        CheckChunks(input, output, "all_gather_into_tensor", "output", "input");
        if (HostFor(input) is { } host) host.AllGather(output, input);
        else AllGatherIntoCore(output, input);
    }

    /// <summary>Returns once every rank has called it (<c>barrier()</c>).</summary>
    public void Barrier()
    {
        CheckUsable();
        BarrierCore();
    }

    /// <summary>
    /// Ends the whole job because this rank cannot go on: prints one line, <c>error: rank R of N: reason</c>, to
    /// standard error and makes the launcher stop every rank (<c>MPI_Abort</c>), so no peer is left waiting in a
    /// collective. Never returns.
    /// </summary>
    public abstract void Abort(string reason, int errorCode = 1);

    /// <summary>Ends the whole job with one line that names this rank and <paramref name="exception"/>'s type and message. Never returns.</summary>
    public void Abort(Exception exception, int errorCode = 1) => Abort(MpiRuntime.Describe(exception), errorCode);

    /// <summary>Releases the group. MPI itself stays initialised until the process exits (MPI cannot be initialised twice).</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        Dispose(disposing: true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the group's resources.</summary>
    protected virtual void Dispose(bool disposing)
    {
    }

    /// <summary>
    /// The group that takes CPU tensors for this one, or null when this group takes them itself (the default). NCCL
    /// reduces CUDA tensors only; its group hands CPU tensors (the trainer's finiteness votes, metric sums, checksums)
    /// to the MPI world it was built over, as PyTorch's default process group does (gloo for CPU, NCCL for CUDA).
    /// The host group must have the same ranks. Two-tensor collectives route on their input: both tensors are on one
    /// device type (checked before).
    /// </summary>
    protected virtual ProcessGroup? HostGroup => null;

    private ProcessGroup? HostFor(Tensor tensor) => tensor.device_type == DeviceType.CPU ? HostGroup : null;

    /// <summary>All-reduce on a validated tensor (dtype reducible, op defined).</summary>
    protected abstract void AllReduceCore(Tensor tensor, ReduceOp op);

    /// <summary>Non-blocking all-reduce on a validated tensor.</summary>
    protected abstract Work AllReduceAsyncCore(Tensor tensor, ReduceOp op);

    /// <summary>Broadcast with a validated root.</summary>
    protected abstract void BroadcastCore(Tensor tensor, int root);

    /// <summary>All-gather.</summary>
    protected abstract Tensor[] AllGatherCore(Tensor tensor);

    /// <summary>Barrier.</summary>
    protected abstract void BarrierCore();

    /// <summary>Reduce-scatter on validated tensors (sizes fit, dtype reducible, op defined).</summary>
    protected abstract void ReduceScatterCore(Tensor output, Tensor input, ReduceOp op);

    /// <summary>All-gather into one tensor, on validated tensors (sizes and dtypes fit).</summary>
    protected abstract void AllGatherIntoCore(Tensor output, Tensor input);

    /// <summary>
    /// Runs the in-place <paramref name="collective"/> on <paramref name="staging"/> (<paramref name="tensor"/> itself or
    /// its staged copy); a staged copy is copied back into <paramref name="tensor"/> afterwards and freed.
    /// </summary>
    private protected static void StagedInPlace(Tensor tensor, Tensor staging, Action<Tensor> collective)
    {
        try
        {
            collective(staging);
            if (!ReferenceEquals(staging, tensor))
            {
                using (no_grad())
                    tensor.copy_(staging);
            }
        }
        finally
        {
            if (!ReferenceEquals(staging, tensor))
                staging.Dispose();
            GC.KeepAlive(tensor);
        }
    }

    /// <summary>
    /// Runs <paramref name="collective"/> from <paramref name="source"/> (<paramref name="input"/> itself or its staged
    /// copy) into <paramref name="output"/>'s memory, or into a contiguous buffer of <paramref name="targetDtype"/> when
    /// <paramref name="output"/> is not contiguous or not of that dtype, copied back afterwards. Staged copies are freed.
    /// </summary>
    private protected static void Staged(Tensor output, Tensor input, Tensor source, ScalarType targetDtype, Action<Tensor, Tensor> collective)
    {
        Tensor target = output.is_contiguous() && output.dtype == targetDtype
            ? output
            : empty(output.numel(), targetDtype, output.device).DetachFromDisposeScope();
        try
        {
            collective(source, target);
            if (!ReferenceEquals(target, output))
            {
                using (no_grad())
                using (var shaped = target.view(output.shape))
                    output.copy_(shaped);
            }
        }
        finally
        {
            if (!ReferenceEquals(source, input))
                source.Dispose();
            if (!ReferenceEquals(target, output))
                target.Dispose();
            GC.KeepAlive(input);
            GC.KeepAlive(output);
        }
    }

    /// <summary>
    /// Finishes an <see cref="ReduceOp.Avg"/> that was reduced as a sum: divides by the world size, with truncation
    /// for integer dtypes (what <c>ncclAvg</c> does).
    /// </summary>
    internal static void DivideForAverage(Tensor sum, int worldSize)
    {
        if (worldSize == 1 || sum.numel() == 0)
            return;
        using var _ = no_grad();
        if (sum.is_floating_point())
            sum.div_(worldSize);
        else
            sum.div_(worldSize, RoundingMode.trunc);
    }

    /// <summary>Checks that <paramref name="whole"/> holds exactly <see cref="WorldSize"/> chunks of <paramref name="chunk"/>'s size and dtype.</summary>
    private void CheckChunks(Tensor chunk, Tensor whole, string operation, string wholeName, string chunkName)
    {
        ArgumentNullException.ThrowIfNull(chunk);
        ArgumentNullException.ThrowIfNull(whole);
        if (whole.dtype != chunk.dtype)
            throw new ArgumentException(
                $"{operation}: {wholeName} is {TensorMemory.Name(whole.dtype)} but {chunkName} is {TensorMemory.Name(chunk.dtype)}; they must have the same dtype.", wholeName);
        if (whole.numel() != chunk.numel() * WorldSize)
            throw new ArgumentException(
                $"{operation}: {wholeName} has {whole.numel()} elements, but it must have world size ({WorldSize}) times {chunkName}'s {chunk.numel()}.", wholeName);
        if (whole.device_type != chunk.device_type)
            throw new ArgumentException($"{operation}: {wholeName} is on {whole.device} but {chunkName} is on {chunk.device}.", wholeName);
    }

    private void CheckUsable() => ObjectDisposedException.ThrowIf(_disposed, this);

    private static void CheckOp(ReduceOp op)
    {
        if (!Enum.IsDefined(op))
            throw new ArgumentOutOfRangeException(nameof(op), op, "Unknown reduce operation.");
    }
}
