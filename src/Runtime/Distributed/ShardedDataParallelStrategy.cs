using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using ModelDsl.Runtime.Training;
using ModelDsl.Runtime.Training.MixedPrecision;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using TensorDataset = ModelDsl.Runtime.Data.TensorDataset;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// Sharded data parallel (ZeRO, Rajbhandari et al. 2020) as a training strategy beside
/// <see cref="DataParallelStrategy"/>: the parameters are partitioned across the ranks as PyTorch's
/// <c>ZeroRedundancyOptimizer</c> partitions them (<see cref="ParameterPartition"/>), each rank keeps the optimiser
/// state of its partition only and steps only its partition, and the updated parameters are all-gathered after every
/// step. <see cref="ShardLevel.OptimizerState"/> (stage 1) all-reduces the gradients as DDP does;
/// <see cref="ShardLevel.Gradients"/> (stage 2) reduce-scatters them so that each rank keeps only its partition's;
/// <see cref="ShardLevel.Parameters"/> (stage 3, FSDP's FULL_SHARD) also keeps only its partition's parameters between
/// steps: each layer's parameters are all-gathered just before its forward (a forward pre-hook) and freed again once
/// the gradients are reduce-scattered, or, for a block that recomputes in backward, right after its forward and again
/// after its backward (<see cref="ShardedGatherHooks"/>).
/// </summary>
/// <remarks>
/// <para>Everything else is DDP's (the same <see cref="DataParallelStrategy"/> runs underneath): rank 0's parameters
/// and buffers at the start, the sampler, the finiteness vote, the buffer broadcast after each step, the epoch
/// metrics. The gradient averaging is DDP's arithmetic (multiply by 1/world size, then sum), so in fp32 the
/// parameters after every step equal DDP's.</para>
/// <para>Checkpoints are sharded (<see cref="ShardedCheckpoint"/>): each rank writes its partition's parameters and
/// optimiser state, rank 0 the index that names the shards; <c>consolidate</c> turns them into one whole checkpoint,
/// and resume, evaluate, export and Load read them directly. Gradient clipping uses the norm over all ranks' gradients,
/// as DDP's does.</para>
/// <para>Stage 2 reduces after backward, through one flat buffer the size of the padded gradients, and frees the
/// other partitions' gradients as it fills it; ZeRO's bucket-wise reduction during backward is not implemented, so
/// the peak holds every gradient plus one flat buffer of their size.</para>
/// <para>Stage 3 frees a layer's gathered parameters after the reduce-scatter, except those of the blocks that
/// recompute in backward (<c>Recompute.Blocks</c>): those are freed right after the block's forward, gathered again
/// for its recomputation and freed once the next block's backward starts (<see cref="ShardedGatherHooks"/>), so with
/// recomputation a step holds one block's gathered weights at a time (two in backward) besides the layers outside the
/// blocks. Without recomputation the tensors autograd saved for backward are the parameters themselves, and TorchSharp
/// offers no saved-tensor hooks to re-gather them before backward, so a layer's gathered parameters stay alive until the
/// step's backward is done (the peak within a step holds all Ψ of them; between steps each rank holds its partition). Before validation and the
/// checkpoint (<see cref="EndEpoch"/>) every parameter is gathered, so evaluation, checkpoints, export and Load see the
/// whole model; the next step's reduce-scatter frees the others' partitions again. Layers are gathered through their
/// <c>call</c> (generated forwards call every layer so); a custom forward that calls a layer's <c>forward</c> directly
/// skips the hook.</para>
/// <para>In bf16 (<see cref="UsePrecision"/> with a <see cref="BFloat16Training"/>) every stage keeps ZeRO's
/// mixed-precision layout (<see cref="ShardedWorkingCopy"/>): 2Ψ + 2Ψ + 12Ψ/N at stage 1, 2Ψ + 14Ψ/N at stage 2, 16Ψ/N
/// at stage 3. The float32 master keeps its partition only, gathered for validation and checkpoints alone; the
/// gradients are reduced from the working copy's, and its (bfloat16) weights are what is all-gathered, at stage 3 by
/// hooks on the working copy's layers.</para>
/// </remarks>
public sealed class ShardedDataParallelStrategy : ITrainingStrategy, IShardedCheckpoints
{
    private readonly ProcessGroup _group;
    private readonly TrainingPlan _plan;
    private readonly DataParallelStrategy _ddp;
    private ParameterPartition? _partition;
    private OptimizerHelper? _optimizer;
    private Dictionary<IntPtr, OptimizerState> _states = new();
    private bool _foreignStateHeld;
    private TimeSpan _communication;
    private long _bytes;
    // Stage 3: whether Parameters[i] is whole on every rank now (the same on every rank: the collectives follow it),
    // each parameter's shape for the gather, and the pre-hooks that gather the layers.
    private bool[] _gathered = Array.Empty<bool>();
    private long[][] _shapes = Array.Empty<long[]>();
    private ShardedGatherHooks? _hooks;
    // Stage 3 in bf16: the working copy the steps run, and its ZeRO layout once started on the master it copies.
    private BFloat16Training? _mixed;
    private ShardedWorkingCopy? _working;

    /// <summary>Trains as one of <paramref name="group"/>'s ranks at the plan's <see cref="TrainingPlan.Shard"/> level.</summary>
    /// <exception cref="ArgumentException">The plan's level is <see cref="ShardLevel.None"/> (use DDP).</exception>
    public ShardedDataParallelStrategy(ProcessGroup group, TrainingPlan plan)
    {
        _group = group ?? throw new ArgumentNullException(nameof(group));
        _plan = plan ?? throw new ArgumentNullException(nameof(plan));
        if (plan.Shard == ShardLevel.None)
            throw new ArgumentException("ShardedDataParallelStrategy implements ShardLevel.OptimizerState, Gradients and Parameters, not ShardLevel.None (use DataParallelStrategy).", nameof(plan));
        _ddp = new DataParallelStrategy(group, plan);
    }

    /// <inheritdoc/>
    public int Rank => _group.Rank;

    /// <inheritdoc/>
    public int WorldSize => _group.WorldSize;

    /// <summary>The ZeRO stage: 1 (optimiser state), 2 (and gradients) or 3 (and parameters).</summary>
    public ShardLevel Level => _plan.Shard;

    /// <summary>The partition of the parameters (after <see cref="Start(nn.Module, long, OptimizerHelper)"/>).</summary>
    public ParameterPartition Partition => _partition ?? throw new InvalidOperationException("Start was not called");

    /// <summary>Bytes this rank has handed to collectives so far (DDP's figures plus the reduce-scatters and all-gathers).</summary>
    public long BytesCommunicated => _ddp.BytesCommunicated + _bytes + (_working?.BytesCommunicated ?? 0);

    /// <summary>Bytes of optimiser state this rank holds now (momentum buffers, Adam's moments).</summary>
    public long OptimizerStateBytes => _states.Values.Sum(MemoryProbe.StateBytes);

    /// <summary>Without the optimiser nothing is sharded but the step: prefer <see cref="Start(nn.Module, long, OptimizerHelper)"/>.</summary>
    public void Start(nn.Module model, long stepsTaken)
    {
        _ddp.Start(model, stepsTaken);
        _partition = ParameterPartition.Create(model.parameters(), WorldSize);
        _states = new();
        _foreignStateHeld = false;
        RemoveHooks();
        _shapes = _partition.Parameters.Select(p => p.shape).ToArray();
        _gathered = Enumerable.Repeat(true, _partition.Parameters.Count).ToArray();
        _working?.Dispose();
        _working = null;
        if (_mixed is { } mixed && ReferenceEquals(mixed.Master, model))
        {
            // bf16: the steps run the working copy, whose weights are gathered in their own dtype (ZeRO's layout); the
            // float32 master keeps this rank's partition only, at every stage.
            _working = new ShardedWorkingCopy(_group, _partition, mixed, Level);
            _working.Start();
            FreeForeignParameters();
            return;
        }
        if (Level != ShardLevel.Parameters) return;
        InstallGatherHooks(model);
        FreeForeignParameters();
    }

    /// <summary>
    /// DDP's start (rank 0's parameters and buffers everywhere), then the partition, and the optimiser state of the
    /// other ranks' partitions released (a resumed run may have loaded more than its own from its checkpoint).
    /// </summary>
    /// <exception cref="NotSupportedException">The optimiser is not SGD, Adam or AdamW.</exception>
    public void Start(nn.Module model, long stepsTaken, OptimizerHelper optimizer)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        Start(model, stepsTaken);
        _optimizer = optimizer;
        var parameters = optimizer.ParamGroups.Cast<ParamGroup>().SelectMany(g => g.Parameters).ToList();
        var states = optimizer.state_dict().State;
        for (int i = 0; i < parameters.Count; i++)
        {
            var state = states[i];
            if (state is not (SGD.State or Adam.State or AdamW.State))
                throw new NotSupportedException($"Sharding keeps the state of SGD, Adam and AdamW; {optimizer.GetType().Name} is not supported.");
            _states[parameters[i].Handle] = state;
        }
        _foreignStateHeld = true;
        ReleaseForeignState();
    }

    /// <summary>
    /// Stage 3 in bf16: the <see cref="BFloat16Training"/> working copy the steps run, which <see cref="ShardedWorkingCopy"/>
    /// keeps in ZeRO's layout (call before Start; other arithmetic, or another level, changes nothing).
    /// </summary>
    public void UsePrecision(ITrainingPrecision precision) => _mixed = precision as BFloat16Training;

    /// <inheritdoc/>
    public long BatchCount(TensorDataset data, int batchSize) => _ddp.BatchCount(data, batchSize);

    /// <inheritdoc/>
    public IEnumerable<(Tensor X, Tensor Y)> Batches(TensorDataset data, int batchSize, long seed, int epoch) => _ddp.Batches(data, batchSize, seed, epoch);

    /// <inheritdoc/>
    public bool AllFinite(bool finite) => _ddp.AllFinite(finite);

    /// <summary>Clipping happens in <see cref="SynchronizeGradients"/>, by the norm over every rank's partition.</summary>
    public bool ClipsGradients => true;

    /// <summary>
    /// Averages the gradients (stage 1: all-reduce, as DDP; stages 2 and 3: reduce-scatter), clips them by the norm
    /// over all ranks when the plan clips, and drops the other partitions' gradients so the optimiser steps this rank's
    /// only; stage 3 frees the other partitions' parameters too.
    /// </summary>
    public void SynchronizeGradients(nn.Module model)
    {
        var partition = Partition;
        ReleaseForeignState();
        if (_working is { } working)
        {
            working.ReduceGradients();
            if (_plan.GradientClipNorm > 0) ClipOwnGradients(_plan.GradientClipNorm);
            FreeForeignParameters(); // the master: gathered for the last validation or checkpoint
            working.FreeForeign();
            return;
        }
        if (Level == ShardLevel.OptimizerState)
        {
            _ddp.SynchronizeGradients(model);
            // Every rank holds every averaged gradient: DDP's own clipping, before the other partitions' are set aside for the step.
            if (_plan.GradientClipNorm > 0) nn.utils.clip_grad_norm_(partition.Parameters, _plan.GradientClipNorm);
            SetAsideForeignGradients();
            return;
        }
        ReduceScatterGradients();
        if (_plan.GradientClipNorm > 0) ClipOwnGradients(_plan.GradientClipNorm);
        if (Level == ShardLevel.Parameters) FreeForeignParameters();
    }

    /// <summary>
    /// After an applied step: all-gathers the updated partitions (stage 3 leaves that to the next forward's hooks);
    /// then DDP's buffer broadcast and divergence check.
    /// </summary>
    public Divergence? AfterStep(nn.Module model, long step, double loss, bool applied)
    {
        RestoreForeignGradients();
        if (applied) _working?.AfterStep();
        if (applied && Level != ShardLevel.Parameters && _working is null) Gather(Enumerable.Range(0, Partition.Parameters.Count).ToArray());
        return _ddp.AfterStep(model, step, loss, applied);
    }

    /// <summary>Stage 3: gathers every parameter, so validation, the checkpoint and whatever follows training see the whole model.</summary>
    public Divergence? EndEpoch(nn.Module model)
    {
        GatherAll();
        return _ddp.EndEpoch(model);
    }

    /// <summary>Stage 3: gathers the parameters not whole on every rank (a collective; a no-op at the other stages).</summary>
    public void GatherAll() => Gather(Enumerable.Range(0, _gathered.Length).Where(i => !_gathered[i]).ToArray());

    /// <inheritdoc/>
    public void SumAcrossRanks(double[] values) => _ddp.SumAcrossRanks(values);

    /// <summary>
    /// Before a checkpoint (every rank calls it): stage 3 gathers every parameter (a no-op after <see cref="EndEpoch"/>).
    /// The checkpoint is written in shards (<see cref="IShardedCheckpoints"/>): each rank writes its partition's
    /// parameters and optimiser state, so no rank gathers the others' state.
    /// </summary>
    public Dictionary<string, byte[]>? SaveState()
    {
        GatherAll();
        return _ddp.SaveState();
    }

    /// <inheritdoc/>
    public void RestoreState(IReadOnlyDictionary<string, byte[]>? state) => _ddp.RestoreState(state);

    /// <summary>DDP's report section, with <c>shard</c> and the sharded collectives' time and bytes added.</summary>
    public void Finish(nn.Module model, TrainingReport report)
    {
        _ddp.Finish(model, report);
        var section = report.GetSection<DistributedReport>("distributed") ?? new DistributedReport();
        section.Shard = MemoryPlan.ShardName(Level);
        // Stage 2 reduce-scatters one flat buffer: DDP's gradient buckets exist underneath but never run.
        if (Level >= ShardLevel.Gradients) section.Buckets = 0;
        section.AllReduceSeconds += _communication.TotalSeconds + (_working?.Communication.TotalSeconds ?? 0);
        section.CommFraction = section.AllReduceSeconds / Math.Max(report.TrainSeconds, 1e-9);
        section.BytesCommunicated = BytesCommunicated;
        report.SetSection("distributed", section);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        RemoveHooks();
        _working?.Dispose();
        _ddp.Dispose();
    }

    /// <summary>
    /// Stage 3: a forward pre-hook on each top-level layer gathers that layer's parameters (those not gathered yet: a
    /// tied weight once), and one on the model gathers the parameters no hookable layer holds.
    /// </summary>
    private void InstallGatherHooks(nn.Module model)
    {
        var partition = Partition;
        var index = new Dictionary<IntPtr, int>();
        for (int i = 0; i < partition.Parameters.Count; i++) index[partition.Parameters[i].Handle] = i;
        _hooks = new ShardedGatherHooks(model, index, partition.Parameters.Count, GatherLayer, FreeForeign);
    }

    private void GatherLayer(int[] indices) => Gather(indices.Where(i => !_gathered[i]).ToArray());

    private void RemoveHooks()
    {
        _hooks?.Dispose();
        _hooks = null;
    }

    /// <summary>Stage 3: the other partitions' parameters among <paramref name="indices"/> become empty tensors.</summary>
    private void FreeForeign(int[] indices)
    {
        if (WorldSize == 1) return;
        var partition = Partition;
        using var noGrad = no_grad();
        foreach (int i in indices)
        {
            // Every rank marks the slot, its own too: the gathers that follow must be the same collective everywhere.
            if (!_gathered[i]) continue;
            _gathered[i] = false;
            if (partition.Owner[i] == Rank) continue;
            using var none = empty(0, partition.Parameters[i].dtype, partition.Parameters[i].device);
            partition.Parameters[i].set_(none);
        }
    }

    /// <summary>Stage 3: the other partitions' parameters become empty tensors (their shapes are kept for the next gather).</summary>
    private void FreeForeignParameters()
    {
        var partition = Partition;
        if (WorldSize == 1) return;
        _hooks?.Freed();
        using var noGrad = no_grad();
        for (int i = 0; i < partition.Parameters.Count; i++)
        {
            _gathered[i] = false;
            if (partition.Owner[i] == Rank) continue;
            using var none = empty(0, partition.Parameters[i].dtype, partition.Parameters[i].device);
            partition.Parameters[i].set_(none);
        }
    }

    /// <summary>
    /// Stage 1: the other partitions' gradients leave the parameters for the optimiser's step (it steps the parameters
    /// that have one, and holds no state for those) and come back after it: stage 1 keeps every averaged gradient, as
    /// ZeRO's stage 1 and PyTorch's ZeroRedundancyOptimizer under DDP do; stage 2 is what frees them.
    /// </summary>
    private void SetAsideForeignGradients()
    {
        var partition = Partition;
        for (int i = 0; i < partition.Parameters.Count; i++)
        {
            if (partition.Owner[i] == Rank) continue;
            var parameter = partition.Parameters[i];
            if (parameter.grad is { } grad) _setAside.Add((parameter, grad.DetachFromDisposeScope()));
            parameter.grad = null;
        }
    }

    private void RestoreForeignGradients()
    {
        foreach (var (parameter, grad) in _setAside)
        {
            parameter.grad = grad;
            grad.Dispose(); // the parameter holds the gradient now; this was one more reference to it
        }
        _setAside.Clear();
    }

    private readonly List<(Parameter Parameter, Tensor Grad)> _setAside = new();

    /// <summary>
    /// Stage 2: every gradient into its owner's segment of one flat buffer (the others' gradients freed as they are
    /// copied), scaled by 1/world size as DDP's buckets are, reduce-scattered with SUM; this rank's segment becomes its
    /// parameters' gradients.
    /// </summary>
    private void ReduceScatterGradients()
    {
        var partition = Partition;
        var clock = Stopwatch.StartNew();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var device = partition.Parameters.Count > 0 ? partition.Parameters[0].device : CPU;
        var flat = zeros(partition.SegmentLength * WorldSize, partition.Dtype, device);
        for (int i = 0; i < partition.Parameters.Count; i++)
        {
            var parameter = partition.Parameters[i];
            using var grad = parameter.grad;
            if (grad is not null)
            {
                // The views are disposed here, not by the scope, so a dropped gradient's storage is freed as it is copied.
                using var source = grad.reshape(-1);
                using var target = flat.narrow(0, partition.Owner[i] * partition.SegmentLength + partition.Offset[i], Numel(i));
                target.copy_(source);
            }
            if (partition.Owner[i] != Rank) parameter.grad = null;
        }
        // DDP multiplies by 1/world size on the way into the bucket, then sums: the same arithmetic, the same result.
        flat.mul_(1.0 / WorldSize);
        var shard = empty(partition.SegmentLength, partition.Dtype, device);
        _group.ReduceScatter(shard, flat, ReduceOp.Sum);
        _bytes += flat.numel() * flat.element_size();
        flat.Dispose();
        for (int i = 0; i < partition.Parameters.Count; i++)
        {
            if (partition.Owner[i] != Rank) continue;
            var parameter = partition.Parameters[i];
            var slice = shard.narrow(0, partition.Offset[i], parameter.numel()).view(parameter.shape);
            using var grad = parameter.grad;
            if (grad is null)
                parameter.grad = slice.to(parameter.dtype).clone().DetachFromDisposeScope();
            else
                grad.copy_(slice);
        }
        _communication += clock.Elapsed;
    }

    // A parameter's elements when whole (a freed one is empty until gathered).
    private long Numel(int i) => _shapes[i].Aggregate(1L, (a, d) => a * d);

    /// <summary>clip_grad_norm_ over every rank's gradients: this rank's squared norm, summed over all ranks.</summary>
    private void ClipOwnGradients(double maxNorm)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var own = Partition.OwnedBy(Rank).Where(p => p.grad is not null).ToList();
        double local = own.Sum(p =>
        {
            using var grad = p.grad!;
            return grad.to(ScalarType.Float64).square().sum().item<double>();
        });
        var total = new[] { local };
        _ddp.SumAcrossRanks(total);
        double norm = Math.Sqrt(total[0]);
        // torch.nn.utils.clip_grad_norm_: max_norm / (total_norm + 1e-6), clamped to 1.
        double coefficient = maxNorm / (norm + 1e-6);
        if (coefficient >= 1) return;
        foreach (var p in own)
        {
            using var grad = p.grad!;
            grad.mul_(coefficient);
        }
    }

    /// <summary>
    /// Parameters <paramref name="indices"/> all-gathered from their owners into every rank's parameters, through one
    /// flat buffer whose segment r holds rank r's of them one after another (padded to the longest): after each step
    /// every partition (stages 1 and 2), or one layer's parameters before its forward (stage 3). A freed parameter gets
    /// its storage back.
    /// </summary>
    private void Gather(int[] indices)
    {
        var partition = Partition;
        if (WorldSize == 1 || indices.Length == 0)
        {
            foreach (int i in indices) _gathered[i] = true;
            return;
        }
        var clock = Stopwatch.StartNew();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var offset = new long[indices.Length];
        var filled = new long[WorldSize];
        for (int k = 0; k < indices.Length; k++)
        {
            int i = indices[k];
            offset[k] = filled[partition.Owner[i]];
            filled[partition.Owner[i]] += _shapes[i].Aggregate(1L, (a, d) => a * d);
        }
        long segment = filled.Max();
        var device = partition.Parameters[indices[0]].device;
        var shard = zeros(segment, partition.Dtype, device);
        for (int k = 0; k < indices.Length; k++)
            if (partition.Owner[indices[k]] == Rank)
            {
                var parameter = partition.Parameters[indices[k]];
                using var source = parameter.reshape(-1);
                using var target = shard.narrow(0, offset[k], parameter.numel());
                target.copy_(source);
            }
        var full = empty(segment * WorldSize, partition.Dtype, device);
        _group.AllGather(full, shard);
        _bytes += shard.numel() * shard.element_size();
        for (int k = 0; k < indices.Length; k++)
        {
            int i = indices[k];
            _gathered[i] = true;
            if (partition.Owner[i] == Rank) continue;
            var parameter = partition.Parameters[i];
            long numel = _shapes[i].Aggregate(1L, (a, d) => a * d);
            using var slice = full.narrow(0, partition.Owner[i] * segment + offset[k], numel);
            using var source = slice.view(_shapes[i]);
            if (parameter.numel() == numel) parameter.copy_(source);
            else
            {
                using var whole = source.to(parameter.dtype).clone();
                parameter.set_(whole);
            }
        }
        _communication += clock.Elapsed;
    }

    /// <summary>Frees the optimiser state of the other ranks' partitions (Adam's moments become empty; SGD's momentum null).</summary>
    private void ReleaseForeignState()
    {
        if (!_foreignStateHeld || _partition is not { } partition) return;
        _foreignStateHeld = false;
        for (int i = 0; i < partition.Parameters.Count; i++)
        {
            if (partition.Owner[i] == Rank || !_states.TryGetValue(partition.Parameters[i].Handle, out var state)) continue;
            var parameter = partition.Parameters[i];
            switch (state)
            {
                case SGD.State sgd:
                    sgd.momentum_buffer?.Dispose();
                    sgd.momentum_buffer = null;
                    break;
                case Adam.State adam:
                    Empty(ref adam.exp_avg, parameter);
                    Empty(ref adam.exp_avg_sq, parameter);
                    break;
                case AdamW.State adamW:
                    Empty(ref adamW.exp_avg, parameter);
                    Empty(ref adamW.exp_avg_sq, parameter);
                    break;
            }
        }

        static void Empty(ref Tensor moment, Parameter parameter)
        {
            moment?.Dispose();
            moment = empty(0, parameter.dtype, parameter.device).DetachFromDisposeScope();
        }
    }
}

/// <summary>
/// Which rank owns each parameter under sharding, as PyTorch 1.13's <c>ZeroRedundancyOptimizer</c> partitions them:
/// the parameters sorted by size, largest first (ties in model order), each to the rank with the fewest elements so
/// far (ties to the lowest rank). Whole parameters, never split. For the collectives, rank r's parameters lie one
/// after another in segment r of a flat buffer of <see cref="SegmentLength"/> × world size elements (the longest
/// partition's length; shorter ones are padded with zeros).
/// </summary>
public sealed class ParameterPartition
{
    private ParameterPartition(IReadOnlyList<Parameter> parameters, int[] owner, long[] offset, long segmentLength, ScalarType dtype)
    {
        (Parameters, Owner, Offset, SegmentLength, Dtype) = (parameters, owner, offset, segmentLength, dtype);
    }

    /// <summary>The parameters that require a gradient, in model order (each once).</summary>
    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>The rank that owns <c>Parameters[i]</c>.</summary>
    public IReadOnlyList<int> Owner { get; }

    /// <summary>Where <c>Parameters[i]</c> starts inside its owner's segment, in elements.</summary>
    public IReadOnlyList<long> Offset { get; }

    /// <summary>Elements per rank's segment of the flat buffers.</summary>
    public long SegmentLength { get; }

    /// <summary>The flat buffers' dtype: the parameters' own, or float64 when they mix dtypes (exact for every float dtype).</summary>
    public ScalarType Dtype { get; }

    /// <summary>Rank <paramref name="rank"/>'s parameters, in model order.</summary>
    public IEnumerable<Parameter> OwnedBy(int rank) => Parameters.Where((_, i) => Owner[i] == rank);

    /// <summary>Elements rank <paramref name="rank"/> owns.</summary>
    public long ElementsOf(int rank) => OwnedBy(rank).Sum(p => p.numel());

    /// <summary>Partitions <paramref name="parameters"/> (those that require a gradient, duplicates once) over <paramref name="worldSize"/> ranks.</summary>
    public static ParameterPartition Create(IEnumerable<Parameter> parameters, int worldSize)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentOutOfRangeException.ThrowIfLessThan(worldSize, 1);
        var seen = new HashSet<IntPtr>();
        var list = parameters.Where(p => p.requires_grad && seen.Add(p.Handle)).ToList();
        // The partition the compiler's memory plan assumes (MemoryPlan.Partition): one algorithm for both.
        var owner = MemoryPlan.Partition(list.Select(p => p.numel()).ToArray(), worldSize);
        var offset = new long[list.Count];
        var sizes = new long[worldSize];
        for (int i = 0; i < list.Count; i++) sizes[owner[i]] += list[i].numel();
        var filled = new long[worldSize];
        for (int i = 0; i < list.Count; i++)
        {
            offset[i] = filled[owner[i]];
            filled[owner[i]] += list[i].numel();
        }
        var dtypes = list.Select(p => p.dtype).Distinct().ToList();
        var dtype = dtypes.Count == 1 ? dtypes[0] : ScalarType.Float64;
        return new ParameterPartition(list, owner, offset, sizes.Length == 0 ? 0 : sizes.Max(), dtype);
    }
}
