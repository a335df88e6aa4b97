using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using ModelDsl.Runtime.Training.MixedPrecision;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// Sharded data parallel in bf16 mixed precision with ZeRO's layout: of the 16 bytes per parameter of mixed-precision
/// Adam, a rank keeps the float32 master weights and the optimiser's moments (12) of its partition only at every stage,
/// the gradients (2, in the working dtype) of every parameter at stage 1 and of its partition from stage 2 on, and the
/// working copy's weights (2: bfloat16 for the layers autocast runs in bfloat16) of every parameter at stages 1 and 2,
/// of its partition at stage 3. After backward the working gradients are summed in float32 into one flat buffer and
/// all-reduced (stage 1) or reduce-scattered (stages 2 and 3); the rank keeps them in the working dtype and converts its
/// partition's to float32 on the master for the optimiser's step (freed after it). After the step the updated master
/// partition is cast into the working copy, whose weights are then all-gathered from their owners in their own dtype
/// (one collective per dtype, so the wire carries bfloat16): all of them after each step at stages 1 and 2, each
/// top-level layer's just before its forward at stage 3 (the other partitions' are empty tensors between steps).
/// </summary>
/// <remarks>
/// The master's other partitions stay empty throughout training; the strategy gathers the master (float32) only for
/// validation and checkpoints. At stage 3, as in fp32 (<see cref="ShardedGatherHooks"/>), a recomputed block's gathered
/// working weights are freed after its forward and gathered again for its recomputation; every other layer's stay alive
/// until the step's backward is done (TorchSharp has no saved-tensor hooks to gather them again for backward). Micro-batches of one step
/// add their gradients up in the working dtype, as ZeRO's bf16 gradients do.
/// </remarks>
internal sealed class ShardedWorkingCopy : IDisposable
{
    private readonly ProcessGroup _group;
    private readonly ParameterPartition _partition;
    private readonly BFloat16Training _precision;
    private readonly Tensor[][] _working;   // per partition index: its working tensors (two for a weight tied across the cast)
    private readonly long[][] _shapes;
    private readonly bool[] _gathered;
    private ShardedGatherHooks? _hooks;
    private readonly ShardLevel _level;

    public ShardedWorkingCopy(ProcessGroup group, ParameterPartition partition, BFloat16Training precision, ShardLevel level)
    {
        (_group, _partition, _precision, _level) = (group, partition, precision, level);
        // Paired by storage, not by handle: a module's parameter enumeration may wrap the same tensor in another handle
        // (a tied weight reached through its second module), and a pair missed here would never get the master's values.
        // The master is whole here (the strategy frees its other partitions after this).
        var index = new Dictionary<IntPtr, int>();
        for (int i = 0; i < partition.Parameters.Count; i++) index[TensorMemory.DataPointer(partition.Parameters[i])] = i;
        var working = Enumerable.Range(0, partition.Parameters.Count).Select(_ => new List<Tensor>()).ToArray();
        foreach (var (master, copy) in precision.Parameters)
        {
            if (!index.TryGetValue(TensorMemory.DataPointer(master), out int i) || copy.numel() != master.numel())
                throw new InvalidOperationException("Sharding in bf16: a working parameter matches no trained parameter of the model the strategy started on");
            working[i].Add(copy);
        }
        _working = working.Select(w => w.ToArray()).ToArray();
        if (_working.Any(w => w.Length == 0))
            throw new InvalidOperationException("Sharding in bf16: a trained parameter has no working copy (the working model must be of the master's class)");
        _shapes = partition.Parameters.Select(p => p.shape).ToArray();
        _gathered = Enumerable.Repeat(true, _working.Length).ToArray();
    }

    /// <summary>Time spent in this class's collectives.</summary>
    public TimeSpan Communication { get; private set; }

    /// <summary>Bytes this rank handed to this class's collectives.</summary>
    public long BytesCommunicated { get; private set; }

    private int Rank => _group.Rank;
    private int WorldSize => _group.WorldSize;

    /// <summary>
    /// With the master whole (after DDP's start): the working copy cast from it; at stage 3 the gather hooks installed on
    /// the working model's top-level layers and the other partitions' working weights freed.
    /// </summary>
    public void Start()
    {
        using (no_grad())
            for (int i = 0; i < _working.Length; i++)
                foreach (var w in _working[i]) w.copy_(_partition.Parameters[i]);
        _precision.WeightsSharded = true;
        if (_level != ShardLevel.Parameters) return;
        InstallGatherHooks(_precision.Module);
        FreeForeign();
    }

    /// <summary>
    /// After backward: every working gradient summed in float32 into its owner's segment of one flat buffer, scaled by
    /// 1/world size (DDP's arithmetic) and all-reduced at stage 1, reduce-scattered from stage 2 on (the other
    /// partitions' gradients freed as they are copied). The averaged gradients become the working gradients again (in
    /// the working dtype, kept until the next step: all of them at stage 1, this rank's partition's after), and this
    /// rank's partition's, converted to float32, the master's for the step.
    /// </summary>
    public void ReduceGradients()
    {
        bool scatter = _level != ShardLevel.OptimizerState;
        var clock = Stopwatch.StartNew();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var device = _partition.Parameters.Count > 0 ? _partition.Parameters[0].device : CPU;
        long segment = _partition.SegmentLength;
        var flat = zeros(segment * WorldSize, ScalarType.Float32, device);
        for (int i = 0; i < _working.Length; i++)
        {
            bool mine = _partition.Owner[i] == Rank;
            long numel = Numel(i);
            using var target = flat.narrow(0, _partition.Owner[i] * segment + _partition.Offset[i], numel);
            foreach (var w in _working[i])
            {
                using var grad = w.grad;
                if (grad is not null)
                {
                    using var source = grad.reshape(-1);
                    target.add_(source);
                }
                if (!mine && scatter) w.grad = null;
            }
        }
        flat.mul_(1.0 / WorldSize);
        Tensor averaged;
        if (scatter)
        {
            averaged = empty(segment, ScalarType.Float32, device);
            _group.ReduceScatter(averaged, flat, ReduceOp.Sum);
        }
        else
        {
            averaged = flat;
            _group.AllReduce(flat, ReduceOp.Sum);
        }
        BytesCommunicated += flat.numel() * flat.element_size();
        for (int i = 0; i < _working.Length; i++)
        {
            bool mine = _partition.Owner[i] == Rank;
            if (!mine && scatter) continue;
            var first = _working[i][0];
            long start = (scatter ? 0 : _partition.Owner[i] * segment) + _partition.Offset[i];
            using var slice = averaged.narrow(0, start, Numel(i)).view(_shapes[i]);
            using (var kept = first.grad)
            {
                if (kept is null)
                {
                    using var copy = slice.to(first.dtype, copy: true);
                    first.grad = copy;
                }
                else kept.copy_(slice);
            }
            // A tied weight keeps its one gradient once, on its first working tensor.
            foreach (var other in _working[i].Skip(1)) other.grad = null;
            if (!mine) continue;
            using var gradient = first.grad!;
            using var master = gradient.to(ScalarType.Float32, copy: true);
            _partition.Parameters[i].grad = master;
        }
        Communication += clock.Elapsed;
    }

    /// <summary>
    /// After an applied step: the master's float32 gradients freed and its updated partition cast into the working copy;
    /// at stages 1 and 2 every working weight all-gathered from its owner.
    /// </summary>
    public void AfterStep()
    {
        using (no_grad())
            for (int i = 0; i < _working.Length; i++)
            {
                if (_partition.Owner[i] != Rank) continue;
                var master = _partition.Parameters[i];
                master.grad = null;
                foreach (var w in _working[i]) w.copy_(master);
            }
        if (_level == ShardLevel.Parameters) return;
        Array.Fill(_gathered, false);
        Gather(Enumerable.Range(0, _working.Length).ToArray());
    }

    /// <summary>The other partitions' working weights become empty tensors (their shapes are kept for the next gather).</summary>
    public void FreeForeign()
    {
        if (WorldSize == 1 || _level != ShardLevel.Parameters) return;
        _hooks?.Freed();
        using var noGrad = no_grad();
        for (int i = 0; i < _working.Length; i++)
        {
            _gathered[i] = false;
            if (_partition.Owner[i] == Rank) continue;
            foreach (var w in _working[i])
            {
                using var none = empty(0, w.dtype, w.device);
                w.set_(none);
            }
        }
    }

    /// <summary>
    /// A forward pre-hook on each top-level layer of the working model gathers that layer's working weights (those not
    /// gathered yet), and one on the working model gathers the weights no hookable layer holds.
    /// </summary>
    private void InstallGatherHooks(nn.Module<Tensor, Tensor> model)
    {
        var index = new Dictionary<IntPtr, int>();
        for (int i = 0; i < _working.Length; i++)
            foreach (var w in _working[i]) index[w.Handle] = i;
        _hooks = new ShardedGatherHooks(model, index, _working.Length, Gather, FreeForeign);
    }

    /// <summary>The other partitions' working weights among <paramref name="indices"/> become empty tensors (a recomputed block's, inside the step).</summary>
    private void FreeForeign(int[] indices)
    {
        if (WorldSize == 1) return;
        using var noGrad = no_grad();
        foreach (int i in indices)
        {
            // Every rank marks the slot, its own too: the gathers that follow must be the same collective everywhere.
            if (!_gathered[i]) continue;
            _gathered[i] = false;
            if (_partition.Owner[i] == Rank) continue;
            foreach (var w in _working[i])
            {
                using var none = empty(0, w.dtype, w.device);
                w.set_(none);
            }
        }
    }

    /// <summary>
    /// The working weights of <paramref name="indices"/> not gathered yet, all-gathered from their owners: per dtype one
    /// flat buffer whose segment r holds rank r's of them one after another (padded to the longest).
    /// </summary>
    private void Gather(int[] indices)
    {
        var wanted = indices.Where(i => !_gathered[i]).ToArray();
        if (wanted.Length == 0) return;
        foreach (int i in wanted) _gathered[i] = true;
        if (WorldSize == 1) return;
        var clock = Stopwatch.StartNew();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var group in wanted.SelectMany(i => _working[i].Select(w => (Index: i, Working: w))).GroupBy(u => u.Working.dtype))
        {
            var units = group.ToArray();
            var offset = new long[units.Length];
            var filled = new long[WorldSize];
            for (int k = 0; k < units.Length; k++)
            {
                int owner = _partition.Owner[units[k].Index];
                offset[k] = filled[owner];
                filled[owner] += Numel(units[k].Index);
            }
            long segment = filled.Max();
            var device = units[0].Working.device;
            var shard = zeros(segment, group.Key, device);
            for (int k = 0; k < units.Length; k++)
                if (_partition.Owner[units[k].Index] == Rank)
                {
                    using var source = units[k].Working.reshape(-1);
                    using var target = shard.narrow(0, offset[k], source.numel());
                    target.copy_(source);
                }
            var full = empty(segment * WorldSize, group.Key, device);
            _group.AllGather(full, shard);
            BytesCommunicated += shard.numel() * shard.element_size();
            for (int k = 0; k < units.Length; k++)
            {
                var (i, w) = units[k];
                int owner = _partition.Owner[i];
                if (owner == Rank) continue;
                using var slice = full.narrow(0, owner * segment + offset[k], Numel(i));
                using var source = slice.view(_shapes[i]);
                if (w.numel() == source.numel()) w.copy_(source);
                else
                {
                    using var whole = source.clone();
                    w.set_(whole);
                }
            }
        }
        Communication += clock.Elapsed;
    }

    private long Numel(int i) => _shapes[i].Aggregate(1L, (a, d) => a * d);

    /// <summary>Removes the hooks (training is over, or the strategy starts on another model: the working copy is not run again).</summary>
    public void Dispose()
    {
        _hooks?.Dispose();
        _hooks = null;
        _precision.WeightsSharded = false;
    }
}
