using System.Collections;
using System.Collections.Generic;
using ModelDsl.Runtime.Distributed;
using ModelDsl.Runtime.Distributed.Mpi;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// Process groups: collective numerics and DDP averaging in real two-rank Open MPI jobs (the ranks run
/// tests/ModelDsl.Distributed.TestHost, which asserts its own results), the single-process group, the launcher
/// environment, and the guards in front of the native libraries (missing, not Open MPI, NCCL without CUDA).
/// </summary>
/// <remarks>One class, so its tests run one after another: they set the library-override variables in-process.</remarks>
public sealed class ProcessGroupTests
{
    private static readonly TimeSpan JobTimeout = TimeSpan.FromSeconds(120);

    /// <summary>Runs <paramref name="scenario"/> on two ranks: exit code 0, each rank's PASS line with its check count, no FAIL.</summary>
    private static void BothRanksPass(string scenario, string checks = "[0-9]+")
    {
        var job = MpiJob.Mpirun(2, scenario, JobTimeout);
        Assert.True(job.ExitCode == 0, job.Output);
        for (int r = 0; r < 2; r++)
            Assert.Matches($"PASS rank {r}: {scenario}: {checks} checks", job.Stdout);
        Assert.DoesNotContain("FAIL", job.Stdout, StringComparison.Ordinal);
    }

    // ---------------------------------------------------------------- two ranks under mpirun

    [Fact]
    public void TwoRanks_EveryCollective_EveryDtypeAndSize_IsExact()
    {
        // float32/64, float16, bfloat16, int64/32/16/8, uint8; sizes 0, 1, 7, 1001, 2^20+3; sum, avg, max, min,
        // blocking and non-blocking; strided views; broadcast and all-gather; the barrier; size-mismatch errors.
        BothRanksPass("collectives", "[0-9]{3,}");
    }

    [Fact]
    public void TwoRanks_GradientReducerAndSyncBatchNorm_MatchTheWholeBatch_D6_AndKeepReplicasBitwiseEqual()
    {
        // D6; whole-batch gradient within 1e-5; bitwise equal across ranks and between the blocking and overlapped
        // paths; buckets started during backward; parameters broadcast from rank 0; in sync after 5 SGD steps;
        // SyncBatchNorm on half batches equals plain BatchNorm on the whole batch (gradients, running statistics).
        var job = MpiJob.Mpirun(2, "ddp", JobTimeout);
        Assert.True(job.ExitCode == 0, job.Output);
        Assert.Contains("PASS rank 0: ddp", job.Stdout, StringComparison.Ordinal);
        Assert.Contains("PASS rank 1: ddp", job.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void TwoRanks_LocalSgd_EqualsDdpAtSyncEveryOne_AndMatchesTheSimulationOfItsStalenessAtEveryStep()
    {
        // SGD, k = 1, no overlap, no warm-up == sync DDP; blocking rounds leave the ranks bitwise in sync; every step's
        // parameters equal a one-process simulation of both replicas (blocking and overlapped rounds, warm-up, DiLoCo).
        BothRanksPass("localsgd");
    }

    [Fact]
    public void TwoRanks_ShardedDataParallel_Stages1To3_EqualDdp_AndKeepOnlyTheirPartitionsState()
    {
        // ZeRO stages 1, 2 and 3 against DDP from the same seed, through the trainer's step: SGD with momentum, Adam,
        // AdamW, clipping; parameters within 1e-6 relative after every step; ranks bitwise in sync; ZeroRedundancyOptimizer's
        // partition; each rank's optimiser state is its partition's only; a sharded checkpoint, consolidated, holds DDP's whole state.
        BothRanksPass("zero");
    }

    [Fact]
    public void TwoRanks_Stage3WithRecomputedLayers_FreesEachLayersGatheredWeightsAfterItsForward_AndStillEqualsDdp()
    {
        // A small GPT with a tied head: stage 3 with each Transformer layer recomputed holds, after the forward, its own
        // partition and the layers outside the blocks only (without recomputation: every weight); in backward at most two
        // layers more. fp32 parameters equal DDP's within 1e-6 (also with 2 micro-batches) and stage 3 without
        // recomputation bitwise; bf16 with and without recomputation agree within 1e-6.
        BothRanksPass("zero3-recompute");
    }

    [Fact]
    public void TwoRanks_GradientAccumulation_EqualsTheWholeBatch_SyncsOnTheLastMicroBatchOnly_AndZeroEqualsDdp()
    {
        // DDP with 3 micro-batches per step == one process on both ranks' 12 samples each (SGD with momentum, Adam),
        // within 1e-6 relative after every step; collectives counted on the group: none on the first 2 micro-batches;
        // ZeRO stages 1 and 2 with accumulation == DDP with accumulation.
        BothRanksPass("accumulation");
    }

    [Fact]
    public void TwoRanks_BFloat16_DdpEqualsOneProcessInBf16_ZeroEqualsDdp()
    {
        // bf16 mixed precision under DDP (k = 1 and 3 micro-batches) == one bf16 process on both ranks' samples within
        // 1e-2 relative (bfloat16 rounds each rank's weight-gradient product), away from fp32 DDP; ZeRO stage 2 in bf16 ==
        // DDP in bf16 within 1e-6 (the same float32 master gradients are reduced); ranks bitwise in sync.
        BothRanksPass("bf16");
    }

    [Fact]
    public void TestHostAlone_IsAGroupOfOne_AndTheSameScenariosPass()
    {
        var job = MpiJob.Alone("ddp", JobTimeout);
        Assert.True(job.ExitCode == 0, job.Output);
        Assert.Contains("PASS rank 0: ddp", job.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void NullReferenceAfterMpiInit_IsStillAnOrdinaryException()
    {
        // Open MPI installs SIGSEGV handlers at MPI_Init; .NET's null-reference handling must survive them.
        var job = MpiJob.Mpirun(2, "nullref", JobTimeout);
        Assert.True(job.ExitCode == 0, job.Output);
        Assert.Contains("PASS rank 1: nullref", job.Stdout, StringComparison.Ordinal);
    }

    // ---------------------------------------------------------------- single process

    [Fact]
    public void Create_OutsideALauncher_IsASingleProcessGroup_WhoseCollectivesAreTheIdentity()
    {
        Assert.Null(DistributedEnvironment.Current);
        using var group = ProcessGroup.Create(CommBackend.Auto, CPU);
        Assert.IsType<SingleProcessGroup>(group);
        Assert.Equal((0, 1, "single"), (group.Rank, group.WorldSize, group.Backend));

        using var t = tensor(new float[] { 1, -2, 3 });
        foreach (var op in new[] { ReduceOp.Sum, ReduceOp.Avg, ReduceOp.Max, ReduceOp.Min })
        {
            group.AllReduce(t, op);
            using var work = group.AllReduceAsync(t, op);
            work.Wait();
            Assert.True(work.IsCompleted());
        }
        Assert.Equal(new float[] { 1, -2, 3 }, t.data<float>().ToArray());
        group.Broadcast(t, 0);
        group.Barrier();
        var gathered = group.AllGather(t);
        Assert.Single(gathered);
        Assert.Equal(t.data<float>().ToArray(), gathered[0].data<float>().ToArray());
        // A copy, not the tensor itself.
        gathered[0].add_(1);
        Assert.Equal(1f, t[0].item<float>());
    }

    [Fact]
    public void Collectives_RejectBadArguments_WithPyTorchLikeMessages()
    {
        using var group = new SingleProcessGroup();
        using var flags = zeros(3, dtype: ScalarType.Bool);
        Assert.Contains("all_reduce: unsupported dtype torch.bool", Assert.Throws<ArgumentException>(() => group.AllReduce(flags)).Message, StringComparison.Ordinal);
        Assert.Contains("Invalid root rank 1, root should be in the interval [0, 0]",
            Assert.Throws<ArgumentOutOfRangeException>(() => group.Broadcast(zeros(1), 1)).Message, StringComparison.Ordinal);
        group.Dispose();
        Assert.Throws<ObjectDisposedException>(() => group.Barrier());
    }

    [Fact]
    public void Create_NcclOnACpuDevice_IsAClearError()
    {
        var e = Assert.Throws<ArgumentException>(() => ProcessGroup.Create(CommBackend.Nccl, CPU));
        Assert.Contains("The NCCL backend reduces CUDA tensors only, but the device is cpu", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Flatten_OutsideAScope_ReturnsATensorOfItsOwn_InsideOne_LeavesItInTheCallersScope()
    {
        // Flatten's pieces (detach, reshape, to_type) live in a scope of its own; the result goes where it did before.
        using var a = tensor(new float[] { 1, 2, 3, 4 }, new long[] { 2, 2 });
        using var transposed = a.t(); // not contiguous: reshape copies
        using var b = tensor(new long[] { 5, 6 });
        var expected = new double[] { 1, 3, 2, 4, 5, 6 };

        using (var outside = TensorMemory.Flatten(new[] { transposed, b }, ScalarType.Float64))
        {
            using (NewDisposeScope()) { }
            Assert.False(outside.IsInvalid);
            Assert.Equal(expected, outside.data<double>().ToArray());
        }

        Tensor inside;
        using (NewDisposeScope())
        {
            inside = TensorMemory.Flatten(new[] { transposed, b }, ScalarType.Float64);
            Assert.Equal(expected, inside.data<double>().ToArray());
        }
        Assert.True(inside.IsInvalid, "the caller's scope disposes the result");
        Assert.False(transposed.IsInvalid || b.IsInvalid, "the inputs are the caller's");
    }

    // ---------------------------------------------------------------- native-library guards

    [Fact]
    public void OpenMpi_IsFoundAndRecognised_WithoutInitialisingMpi()
    {
        var library = MpiLibrary.Load();
        Assert.StartsWith("Open MPI v", library.Version, StringComparison.Ordinal);
        Assert.False(MpiRuntime.IsInitialized);
    }

    [Fact]
    public void MissingOpenMpi_SaysHowToInstallIt()
    {
        var e = WithVariable(MpiLibrary.LibraryVariable, "/nonexistent/libmpi.so.40", () => Assert.Throws<DistributedException>(MpiLibrary.Load));
        Assert.Contains("Open MPI was not found", e.Message, StringComparison.Ordinal);
        Assert.Contains("install Open MPI: apt-get install openmpi-bin", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ALibraryThatIsNotMpi_IsRejected()
    {
        var e = WithVariable(MpiLibrary.LibraryVariable, "libc.so.6", () => Assert.Throws<DistributedException>(MpiLibrary.Load));
        Assert.Contains("'libc.so.6' is not an MPI library: it has no MPI_Get_library_version", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AnMpiThatIsNotOpenMpi_IsRejectedBeforeAnyCall()
    {
        const string mpich = "MPICH Version:\t4.0.2\nMPICH Release date:\tThu Apr  7 12:34:45 CDT 2022\nMPICH ABI:\t14:2:2\n";
        var e = Assert.Throws<DistributedException>(() => MpiLibrary.CheckIsOpenMpi(mpich, "libmpi.so.12"));
        Assert.Contains("The MPI library 'libmpi.so.12' is not Open MPI (it reports \"MPICH Version:\t4.0.2\")", e.Message, StringComparison.Ordinal);
        MpiLibrary.CheckIsOpenMpi("Open MPI v4.1.4, package: Debian OpenMPI, ident: 4.1.4, repo rev: v4.1.4, May 26, 2022", "libmpi.so.40");
    }

    [Fact]
    public void MissingNccl_IsAClearError_EvenForACudaDevice()
    {
        var e = WithVariable("MODELDSL_NCCL_LIBRARY", "/nonexistent/libnccl.so.2",
            () => Assert.Throws<DistributedException>(() => new NcclProcessGroup(new SingleProcessGroup(), new Device(DeviceType.CUDA, 0))));
        Assert.Contains("NCCL was not found (/nonexistent/libnccl.so.2 could not be loaded)", e.Message, StringComparison.Ordinal);
        var notNccl = WithVariable("MODELDSL_NCCL_LIBRARY", "libc.so.6",
            () => Assert.Throws<DistributedException>(() => new NcclProcessGroup(new SingleProcessGroup(), new Device(DeviceType.CUDA, 0))));
        Assert.Contains("'libc.so.6' is not NCCL", notNccl.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Nccl_RejectsCpuDevicesAndTensors()
    {
        var device = Assert.Throws<ArgumentException>(() => new NcclProcessGroup(new SingleProcessGroup(), CPU));
        Assert.Contains("The NCCL backend works on CUDA devices, but the device is cpu", device.Message, StringComparison.Ordinal);
        using var t = zeros(4);
        var tensorError = Assert.Throws<ArgumentException>(() => NcclProcessGroup.CheckOnCuda(t, "all_reduce"));
        Assert.Contains("all_reduce: the NCCL backend works on CUDA tensors only, but this tensor is on cpu", tensorError.Message, StringComparison.Ordinal);
        Assert.Equal(9, NcclProcessGroup.DataType(ScalarType.BFloat16));
        Assert.Equal(6, NcclProcessGroup.DataType(ScalarType.Float16));
        Assert.Equal(7, NcclProcessGroup.DataType(ScalarType.Float32));
    }

    [Fact]
    public void ADeviceBackend_HandsCpuTensorsToItsHostGroup_ForEveryCollective()
    {
        // NCCL's group does this with its MPI world (the trainer's votes and metric sums are CPU tensors); here a
        // stand-in device backend that fails on any CPU tensor, over a two-rank host that sums as if both ranks held
        // the same values.
        using var host = new LoopbackGroup(worldSize: 2);
        using var group = new DeviceOnly(host);
        using var t = tensor(new[] { 1.0, 2.0 });
        group.AllReduce(t);
        Assert.Equal(new[] { 2.0, 4.0 }, t.data<double>().ToArray());
        using (var work = group.AllReduceAsync(t, ReduceOp.Max))
            work.Wait();
        group.Broadcast(t, 1);
        var gathered = group.AllGather(t);
        Assert.Equal(2, gathered.Length);
        foreach (var g in gathered) g.Dispose();
        using var whole = tensor(new[] { 1f, 2f, 3f, 4f });
        using var chunk = zeros(2);
        group.ReduceScatter(chunk, whole);
        Assert.Equal(new[] { 2f, 4f }, chunk.data<float>().ToArray());
        group.AllGather(whole, chunk);
        Assert.Equal(new[] { "all_reduce Sum", "all_reduce_async Max", "broadcast 1", "all_gather", "reduce_scatter Sum", "all_gather_into" }, host.Calls);
        // A group without a host group takes its CPU tensors itself.
        host.AllReduce(t);
        Assert.Equal("all_reduce Sum", host.Calls[^1]);
        Assert.Equal(7, host.Calls.Count);
    }

    /// <summary>A backend for tensors that are not on the CPU: a CPU tensor reaching it is the bug under test.</summary>
    private sealed class DeviceOnly(ProcessGroup host) : ProcessGroup
    {
        public override int Rank => host.Rank;
        public override int WorldSize => host.WorldSize;
        public override string Backend => "device-only";
        protected override ProcessGroup HostGroup => host;
        public override void Abort(string reason, int errorCode = 1) => throw new InvalidOperationException(reason);
        private static InvalidOperationException Reached() => new("a CPU tensor reached the device backend");
        protected override void AllReduceCore(Tensor tensor, ReduceOp op) => throw Reached();
        protected override Work AllReduceAsyncCore(Tensor tensor, ReduceOp op) => throw Reached();
        protected override void BroadcastCore(Tensor tensor, int root) => throw Reached();
        protected override Tensor[] AllGatherCore(Tensor tensor) => throw Reached();
        protected override void BarrierCore() => throw Reached();
        protected override void ReduceScatterCore(Tensor output, Tensor input, ReduceOp op) => throw Reached();
        protected override void AllGatherIntoCore(Tensor output, Tensor input) => throw Reached();
    }

    // ---------------------------------------------------------------- launcher environment

    [Fact]
    public void Environment_OpenMpiPmiAndSrunRanksAreRecognised()
    {
        Assert.Null(DistributedEnvironment.Detect(new Hashtable()));
        Assert.Equal(new DistributedEnvironment(1, 4, 1, "mpirun"),
            DistributedEnvironment.Detect(new Hashtable { ["OMPI_COMM_WORLD_RANK"] = "1", ["OMPI_COMM_WORLD_SIZE"] = "4", ["OMPI_COMM_WORLD_LOCAL_RANK"] = "1" }));
        Assert.Equal(new DistributedEnvironment(2, 3, 0, "pmi"),
            DistributedEnvironment.Detect(new Hashtable { ["PMI_RANK"] = "2", ["PMI_SIZE"] = "3" }));
        Assert.Equal(new DistributedEnvironment(5, 8, 1, "srun"),
            DistributedEnvironment.Detect(new Hashtable { ["SLURM_PROCID"] = "5", ["SLURM_STEP_ID"] = "0", ["SLURM_STEP_NUM_TASKS"] = "8", ["SLURM_NTASKS"] = "16", ["SLURM_LOCALID"] = "1" }));
        // A batch script (its step is the batch step) is not a rank, even with SLURM_PROCID and SLURM_NTASKS set.
        Assert.Null(DistributedEnvironment.Detect(new Hashtable { ["SLURM_PROCID"] = "0", ["SLURM_NTASKS"] = "4" }));
        Assert.Null(DistributedEnvironment.Detect(new Hashtable { ["SLURM_PROCID"] = "0", ["SLURM_NTASKS"] = "4", ["SLURM_STEP_ID"] = "4294967294" }));
        Assert.Null(DistributedEnvironment.Detect(new Hashtable { ["SLURM_PROCID"] = "0", ["SLURM_NTASKS"] = "4", ["SLURM_STEP_ID"] = "batch" }));
    }

    [Fact]
    public void Environment_InconsistentVariables_AreClearErrors()
    {
        Assert.Contains("Invalid rank 4 for world size 4",
            Assert.Throws<DistributedException>(() => DistributedEnvironment.Detect(new Hashtable { ["OMPI_COMM_WORLD_RANK"] = "4", ["OMPI_COMM_WORLD_SIZE"] = "4" })).Message, StringComparison.Ordinal);
        Assert.Contains("PMI_SIZE is not",
            Assert.Throws<DistributedException>(() => DistributedEnvironment.Detect(new Hashtable { ["PMI_RANK"] = "0" })).Message, StringComparison.Ordinal);
        Assert.Contains("OMPI_COMM_WORLD_SIZE='two' is not an integer",
            Assert.Throws<DistributedException>(() => DistributedEnvironment.Detect(new Hashtable { ["OMPI_COMM_WORLD_RANK"] = "0", ["OMPI_COMM_WORLD_SIZE"] = "two" })).Message, StringComparison.Ordinal);
    }

    private static T WithVariable<T>(string name, string value, Func<T> body)
    {
        string? old = Environment.GetEnvironmentVariable(name);
        Environment.SetEnvironmentVariable(name, value);
        try
        {
            return body();
        }
        finally
        {
            Environment.SetEnvironmentVariable(name, old);
        }
    }
}
