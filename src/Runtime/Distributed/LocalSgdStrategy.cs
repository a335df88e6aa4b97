using System.Diagnostics;
using ModelDsl.Runtime.Training;
using TensorDataset = ModelDsl.Runtime.Data.TensorDataset;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// Asynchronous data parallel (<see cref="ParallelMode.Async"/>): PyTorch's post-local SGD with a
/// <see cref="PeriodicModelAverager"/>, and optionally DiLoCo's outer Nesterov step (<see cref="OuterNesterov"/>).
/// The first <c>WarmupSteps</c> steps are synchronous DDP; after them each rank steps on its own gradients and every
/// <c>SyncEvery</c> steps the replicas are averaged (or the outer optimiser is applied to their mean progress).
/// </summary>
/// <remarks>
/// <para><b>What a rank holds when.</b> Without overlap, a round is a blocking all-reduce of the parameters (and the
/// floating-point buffers, which are always plainly averaged): right after it every rank holds the same global
/// parameters θ_g. With overlap (the default), a round takes a snapshot s_i of the rank's parameters, starts a
/// non-blocking all-reduce of s_i / N and goes on stepping; at the next round it waits for that average, computes
/// the new global θ_g from it (identically on every rank) and sets its parameters to θ_g + (θ_i − s_i): the
/// average arrives one round late, and the rank keeps the local progress it made meanwhile. Staleness is bounded by
/// one round.</para>
/// <para><b>Epochs end in agreement.</b> The last step of every epoch closes the open round (applies a pending
/// average) and, if any local step was taken since the ranks last agreed, runs a blocking round: validation, the
/// checkpoint, the test evaluation and the exported model always see the ranks' common model, and a resumed run
/// starts from it. These rounds count in <c>sync_rounds</c>. The outer momentum travels in the checkpoint
/// (<see cref="SaveState"/>), so a resumed DiLoCo run continues exactly.</para>
/// <para><b>Divergence.</b> Between rounds no rank waits for another: a local step whose loss is not finite is skipped
/// on that rank alone, and at the next round (or the end of the epoch) a 24-byte all-gather tells every rank the
/// earliest such step any rank met; all stop there together, with DDP's message and exit code. Warm-up steps vote
/// every step, as DDP does. Batches and the epoch's metric sums are DDP's (<see cref="DataParallelStrategy"/>, which
/// also runs the warm-up steps).</para>
/// </remarks>
public sealed class LocalSgdStrategy : ITrainingStrategy
{
    private readonly ProcessGroup _group;
    private readonly TrainingPlan _plan;
    private readonly DataParallelStrategy _ddp;
    private readonly PeriodicModelAverager _averager;
    private readonly OuterNesterov? _outer;

    private Tensor[] _state = Array.Empty<Tensor>();
    private long _parameterCount;
    private Tensor? _global;          // θ_g: the parameters every rank agreed on at the last round
    private Tensor? _snapshot, _sent; // overlap: this rank's parameters at the pending round, and the all-reduced copy
    private Work? _pending;
    private long _stepsSinceAgreement; // local steps since the ranks last held the same model
    private Divergence? _divergence;   // this rank's first non-finite (skipped) local step since the last vote

    private long _rounds, _overlappedRounds, _blockingRounds, _bytes;
    private double _blockingSeconds, _transferSeconds, _waitSeconds;

    /// <summary>Trains as one of <paramref name="group"/>'s ranks with the plan's local SGD settings.</summary>
    public LocalSgdStrategy(ProcessGroup group, TrainingPlan plan)
    {
        _group = group ?? throw new ArgumentNullException(nameof(group));
        _plan = plan ?? throw new ArgumentNullException(nameof(plan));
        _ddp = new DataParallelStrategy(group, plan);
        _averager = new PeriodicModelAverager(plan.SyncEvery, plan.WarmupSteps);
        if (plan.OuterOptimizer == OuterOptimizer.Nesterov)
            _outer = new OuterNesterov(plan.OuterLearningRate, plan.OuterMomentum);
    }

    /// <inheritdoc/>
    public int Rank => _group.Rank;

    /// <inheritdoc/>
    public int WorldSize => _group.WorldSize;

    /// <summary>Averaging rounds so far (scheduled ones and those that close an epoch).</summary>
    public long Rounds => _rounds;

    /// <summary>Bytes this rank handed to collectives so far (DDP's warm-up and votes included).</summary>
    public long BytesCommunicated => _bytes + _ddp.BytesCommunicated;

    /// <inheritdoc/>
    public void Start(nn.Module model, long stepsTaken)
    {
        FinishPending(apply: false);
        _ddp.Start(model, stepsTaken);
        _state = model.parameters().Select(p => (Tensor)p)
            .Concat(model.buffers().Where(b => b.is_floating_point()))
            .ToArray();
        _parameterCount = model.parameters().Sum(p => p.numel());
        _averager.Step = stepsTaken;
        _stepsSinceAgreement = 0;
        _outer?.Reset();
        _global?.Dispose();
        _global = Flatten(); // every rank holds rank 0's state now
    }

    /// <inheritdoc/>
    public long BatchCount(TensorDataset data, int batchSize) => _ddp.BatchCount(data, batchSize);

    /// <inheritdoc/>
    public IEnumerable<(Tensor X, Tensor Y)> Batches(TensorDataset data, int batchSize, long seed, int epoch) =>
        _ddp.Batches(data, batchSize, seed, epoch);

    /// <inheritdoc/>
    public bool AllFinite(bool finite) =>
        // Warm-up steps are DDP steps, agreed every step; local steps skip a non-finite update on this rank alone and
        // the ranks decide at the next round (Vote), so no rank waits for the others between rounds.
        _averager.IsWarmup(_averager.Step) ? _ddp.AllFinite(finite) : finite;

    /// <inheritdoc/>
    public void SynchronizeGradients(nn.Module model)
    {
        // Post-local SGD: the warm-up steps are DDP steps; afterwards each rank applies its own gradients.
        if (_averager.IsWarmup(_averager.Step)) _ddp.SynchronizeGradients(model);
    }

    /// <inheritdoc/>
    public Divergence? AfterStep(nn.Module model, long step, double loss, bool applied)
    {
        long index = _averager.Step;
        bool round = _averager.Advance();
        if (_averager.IsWarmup(index))
        {
            // A DDP step (its buffer broadcast included): the replicas are identical after it.
            if (_ddp.AfterStep(model, step, loss, applied) is { } diverged) return diverged;
            if (index == _averager.WarmupSteps - 1) Agreed(Flatten()); // local SGD starts from here
            return null;
        }
        if (!applied) _divergence ??= new Divergence(loss, step);
        _stepsSinceAgreement++;
        if (!round)
        {
            _pending?.IsCompleted(); // lets Open MPI progress the pending all-reduce
            return null;
        }
        if (Vote() is { } agreed) return agreed;
        if (_plan.OverlapAveraging) StartOverlappedRound();
        else BlockingRound();
        return null;
    }

    /// <inheritdoc/>
    public Divergence? EndEpoch(nn.Module model)
    {
        if (_stepsSinceAgreement > 0 && Vote() is { } agreed) return agreed;
        FinishPending(apply: true);
        if (_stepsSinceAgreement > 0) BlockingRound();
        return null;
    }

    /// <summary>
    /// The ranks' finiteness vote at a round: each sends its first skipped (non-finite) step since the last vote, and
    /// all stop at the earliest one any rank met; null when every local step was finite.
    /// </summary>
    private Divergence? Vote()
    {
        var mine = _divergence is { } d ? new[] { 1.0, d.Step, d.Loss } : new[] { 0.0, 0.0, 0.0 };
        using var local = torch.tensor(mine, dtype: ScalarType.Float64);
        var all = _group.AllGather(local);
        _bytes += 3 * sizeof(double);
        Divergence? first = null;
        foreach (var rank in all)
        {
            using (rank)
            {
                var v = rank.data<double>().ToArray();
                if (v[0] > 0 && (first is null || v[1] < first.Value.Step)) first = new Divergence(v[2], (long)v[1]);
            }
        }
        _divergence = null;
        return first;
    }

    /// <inheritdoc/>
    public void SumAcrossRanks(double[] values) => _ddp.SumAcrossRanks(values);

    private const string OuterMomentumKey = "outer_momentum";

    /// <inheritdoc/>
    public Dictionary<string, byte[]>? SaveState() =>
        _outer?.SaveBuffer() is { } buffer ? new Dictionary<string, byte[]> { [OuterMomentumKey] = buffer } : null;

    /// <inheritdoc/>
    public void RestoreState(IReadOnlyDictionary<string, byte[]>? state)
    {
        if (_outer is null || state is null || !state.TryGetValue(OuterMomentumKey, out var bytes)) return;
        try
        {
            _outer.RestoreBuffer(bytes, _parameterCount, _global!.device);
        }
        catch (ArgumentException e)
        {
            throw new TrainingException($"the checkpoint's local SGD state does not fit this model: {e.Message}");
        }
    }

    /// <inheritdoc/>
    public void Finish(nn.Module model, TrainingReport report)
    {
        double meanTransfer = _blockingRounds > 0 ? _transferSeconds / _blockingRounds : 0;
        double waited = _blockingSeconds + _waitSeconds;
        report.SetSection("distributed", new DistributedReport
        {
            Mode = "async",
            Backend = _group.Backend,
            WorldSize = WorldSize,
            RanksInSync = DataParallel.RanksInSync(_group, model),
            AllReduceSeconds = _ddp.CommunicationSeconds,
            CommFraction = (waited + _ddp.CommunicationSeconds) / Math.Max(report.TrainSeconds, 1e-9),
            Buckets = 0,
            BucketSizeMB = _plan.BucketSizeMB,
            Steps = report.Steps,
            BytesCommunicated = BytesCommunicated,
            SyncEvery = _plan.SyncEvery,
            WarmupSteps = _plan.WarmupSteps,
            OuterOptimizer = _plan.OuterOptimizer.ToString().ToLowerInvariant(),
            Overlap = _plan.OverlapAveraging,
            SyncRounds = _rounds,
            CommSeconds = waited,
            CommSecondsHidden = Math.Max(0, _overlappedRounds * meanTransfer - _waitSeconds),
        });
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        FinishPending(apply: false);
        _global?.Dispose();
        _outer?.Dispose();
        _ddp.Dispose();
    }

    /// <summary>A blocking round: every rank ends holding the same new global parameters.</summary>
    private void BlockingRound()
    {
        var clock = Stopwatch.StartNew();
        using var average = Flatten();
        average.div_(WorldSize);
        // The barrier absorbs the ranks' skew, so the all-reduce alone is timed: what a round's transfer costs, the
        // yardstick for the time overlapped rounds hid.
        _group.Barrier();
        var transfer = Stopwatch.StartNew();
        _group.AllReduce(average);
        _transferSeconds += transfer.Elapsed.TotalSeconds;
        _bytes += average.numel() * average.element_size();
        Combine(average);
        Scatter(_global!);
        _blockingSeconds += clock.Elapsed.TotalSeconds;
        _blockingRounds++;
        _rounds++;
        _stepsSinceAgreement = 0;
    }

    /// <summary>An overlapped round: applies the previous round's average, then starts this one's.</summary>
    private void StartOverlappedRound()
    {
        FinishPending(apply: true);
        _snapshot = Flatten();
        _sent = _snapshot.div(WorldSize).DetachFromDisposeScope();
        _pending = _group.AllReduceAsync(_sent);
        _bytes += _sent.numel() * _sent.element_size();
        _overlappedRounds++;
        _rounds++;
    }

    /// <summary>Waits for the pending round; with <paramref name="apply"/>, θ_i ← θ_g + (θ_i − s_i) with the new θ_g.</summary>
    private void FinishPending(bool apply)
    {
        if (_pending is null) return;
        var clock = Stopwatch.StartNew();
        _pending.Wait();
        _waitSeconds += clock.Elapsed.TotalSeconds;
        if (apply)
        {
            Combine(_sent!);
            using var current = Flatten();
            current.sub_(_snapshot!); // two statements, not a chain: the GC could finalize sub_'s returned handle during add_
            current.add_(_global!);
            Scatter(current);
        }
        _pending.Dispose();
        _snapshot!.Dispose();
        _sent!.Dispose();
        (_pending, _snapshot, _sent) = (null, null, null);
    }

    /// <summary>θ_g from the ranks' mean: the mean itself, or the outer optimiser's step from θ_g over the parameters.</summary>
    private void Combine(Tensor average)
    {
        using var noGrad = no_grad();
        var global = _global!;
        if (_outer is not null && _parameterCount > 0)
        {
            using var parameters = global.narrow(0, 0, _parameterCount);
            using var mean = average.narrow(0, 0, _parameterCount);
            _outer.Step(parameters, mean);
            long buffers = global.numel() - _parameterCount;
            if (buffers > 0)
            {
                using var b = global.narrow(0, _parameterCount, buffers);
                using var m = average.narrow(0, _parameterCount, buffers);
                b.copy_(m);
            }
        }
        else global.copy_(average);
    }

    private void Agreed(Tensor state)
    {
        _global?.Dispose();
        _global = state;
        _stepsSinceAgreement = 0;
    }

    /// <summary>The parameters and floating-point buffers as one flat float32 tensor (a copy; the DSL's models are float32).</summary>
    private Tensor Flatten()
    {
        using var noGrad = no_grad();
        if (_state.Length == 0) return zeros(0).DetachFromDisposeScope();
        using var scope = NewDisposeScope();
        // Detached from every dispose scope: the trainer disposes each step's tensors, and a round's state outlives it.
        return TensorMemory.Flatten(_state, ScalarType.Float32).DetachFromDisposeScope();
    }

    private void Scatter(Tensor flat) => TensorMemory.Unflatten(flat, _state);
}
