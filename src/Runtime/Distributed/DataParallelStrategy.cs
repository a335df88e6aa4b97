using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json.Serialization;
using ModelDsl.Runtime.Training;
using TorchSharp;
using static TorchSharp.torch;
using TensorDataset = ModelDsl.Runtime.Data.TensorDataset;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// Synchronous data parallel with PyTorch DDP semantics, plugged into the trainer through <see cref="ITrainingStrategy"/>:
/// parameters and buffers broadcast from rank 0 at the start, each rank trains on its <see cref="DistributedSampler"/>
/// share of every epoch, gradients are averaged in buckets after backward (<see cref="GradientReducer"/>), buffers are re-broadcast from rank 0 after every step (DDP's <c>broadcast_buffers</c>, which
/// does it before the next forward), and the stop decision and the epoch's metrics are reduced across ranks.
/// </summary>
/// <remarks>
/// With the same seed, world size N at per-rank batch b takes the same steps as one process at batch N·b (up to
/// float summation order) when the training set divides by N·b: rank r's batch k holds the positions
/// k·N·b + r + N·i of the epoch's permutation, so the ranks together hold exactly the single process's batch k.
/// Otherwise the sampler pads by repeating the first samples, as PyTorch's does (docs/distributed.md).
/// </remarks>
public sealed class DataParallelStrategy : ITrainingStrategy
{
    private readonly ProcessGroup _group;
    private readonly TrainingPlan _plan;
    private GradientReducer? _reducer;
    private (string Name, Tensor Buffer)[] _buffers = Array.Empty<(string, Tensor)>();
    private long _gradientBytes, _bufferBytes, _bufferElements;
    private bool _buffersTravelWithGradients, _buffersSentThisStep;

    /// <summary>Trains as one of <paramref name="group"/>'s ranks; the plan gives the bucket size.</summary>
    public DataParallelStrategy(ProcessGroup group, TrainingPlan plan)
    {
        _group = group ?? throw new ArgumentNullException(nameof(group));
        _plan = plan ?? throw new ArgumentNullException(nameof(plan));
    }

    /// <inheritdoc/>
    public int Rank => _group.Rank;

    /// <inheritdoc/>
    public int WorldSize => _group.WorldSize;

    /// <inheritdoc/>
    public void Start(nn.Module model, long stepsTaken)
    {
        if (_plan.SyncBatchNorm && WorldSize > 1) SyncBatchNorm.Convert(_group, model);
        DataParallel.BroadcastParameters(_group, model);
        _reducer?.Dispose();
        // Gradients are reduced after backward with blocking all-reduces: starting buckets during backward works
        // (GradientReducer.EnableOverlap) but measured slower on CPU ranks that already keep every core busy and
        // whose non-blocking MPI all-reduce only progresses inside MPI calls (docs/distributed.md).
        _reducer = new GradientReducer(_group, model.parameters(), _plan.BucketSizeMB);
        _buffersSentThisStep = false;
        _buffers = model.named_buffers().Where(b => b.buffer.is_floating_point()).Select(b => (b.name, b.buffer)).ToArray();
        _gradientBytes = model.parameters().Where(p => p.requires_grad).Sum(p => p.numel() * p.element_size());
        _bufferElements = _buffers.Sum(b => b.Buffer.numel());
        _bufferBytes = _bufferElements * sizeof(double);
        // Rank 0's buffers ride in the step's gradient all-reduce when they have the last bucket's dtype (float32
        // BatchNorm statistics of a float32 model): the others add zeros, so the sum is rank 0's values exactly.
        _buffersTravelWithGradients = _buffers.Length > 0 && _buffers.All(b => _reducer.CanCarry(b.Buffer));
    }

    /// <summary>
    /// Bytes this rank has handed to collectives so far: gradient all-reduces, buffer broadcasts and the 4-byte
    /// finiteness vote of every step (the payload each rank contributes, not the wire traffic, which depends on
    /// the library's algorithm). Local SGD reports the same figure, so the two modes compare directly.
    /// </summary>
    public long BytesCommunicated { get; private set; }

    /// <summary>Seconds this rank spent in gradient all-reduces.</summary>
    public double CommunicationSeconds => _reducer?.CommunicationTime.TotalSeconds ?? 0;

    /// <inheritdoc/>
    public long BatchCount(TensorDataset data, int batchSize) => (Sampler(data, 0, 0).NumSamples + batchSize - 1) / batchSize;

    /// <inheritdoc/>
    public IEnumerable<(Tensor X, Tensor Y)> Batches(TensorDataset data, int batchSize, long seed, int epoch)
    {
        var sampler = Sampler(data, seed, epoch);
        return data.Batches(sampler.Indices(), batchSize);
    }

    private DistributedSampler Sampler(TensorDataset data, long seed, int epoch)
    {
        var sampler = new DistributedSampler(data.Count, WorldSize, Rank, shuffle: true, seed: seed);
        sampler.SetEpoch(epoch);
        return sampler;
    }

    /// <inheritdoc/>
    public bool AllFinite(bool finite)
    {
        using var flag = torch.tensor(finite ? 0 : 1);
        _group.AllReduce(flag, ReduceOp.Max);
        BytesCommunicated += sizeof(int);
        return flag.item<int>() == 0;
    }

    /// <inheritdoc/>
    public void SynchronizeGradients(nn.Module model)
    {
        (_reducer ?? throw new InvalidOperationException("Start was not called")).Synchronize();
        BytesCommunicated += _gradientBytes;
    }

    /// <inheritdoc/>
    public bool VotesWithGradients => true;

    /// <summary>
    /// One all-reduce per step: the gradient buckets, the last one carrying this rank's finiteness vote (1 if its loss
    /// was not finite; the sum counts such ranks) and, where they fit its dtype, rank 0's buffers (DDP's
    /// <c>broadcast_buffers</c>: the other ranks add zeros). A vote, an all-reduce and a broadcast each made every rank wait
    /// for the slowest once per step; now once. <see cref="AllFinite"/> and <see cref="AfterStep"/>'s broadcast remain for
    /// the strategies that compose this one (local SGD's warm-up, ZeRO), which vote before backward.
    /// </summary>
    public bool SynchronizeGradients(nn.Module model, bool finite)
    {
        var reducer = _reducer ?? throw new InvalidOperationException("Start was not called");
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        long bufferElements = _buffersTravelWithGradients ? _bufferElements : 0;
        var extra = reducer.ExtraValues(1 + bufferElements);
        if (!finite) extra[0] = 1;
        if (bufferElements > 0 && Rank == 0)
        {
            // Each buffer straight into its place: a step waits for its slowest rank, and this work is rank 0's alone.
            long offset = 1;
            foreach (var (_, buffer) in _buffers)
            {
                long n = buffer.numel();
                extra.narrow(0, offset, n).copy_(buffer.reshape(-1));
                offset += n;
            }
        }
        reducer.Synchronize(extra);
        BytesCommunicated += _gradientBytes + extra.numel() * extra.element_size();
        if (bufferElements > 0)
        {
            TensorMemory.Unflatten(extra.narrow(0, 1, bufferElements), _buffers.Select(b => b.Buffer));
            _buffersSentThisStep = true;
        }
        return extra[0].item<float>() == 0;
    }

    /// <inheritdoc/>
    public Divergence? AfterStep(nn.Module model, long step, double loss, bool applied)
    {
        bool sent = _buffersSentThisStep;
        _buffersSentThisStep = false;
        if (!applied) return new Divergence(loss, step); // the ranks agreed: every rank skipped this step
        if (_buffers.Length == 0 || sent) return null;
        BytesCommunicated += _bufferBytes;
        // One broadcast for all buffers (DDP coalesces them too): a collective per buffer costs a round trip each.
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var flat = TensorMemory.Flatten(_buffers.Select(b => b.Buffer), ScalarType.Float64);
        _group.Broadcast(flat, 0);
        TensorMemory.Unflatten(flat, _buffers.Select(b => b.Buffer));
        return null;
    }

    /// <inheritdoc/>
    public Divergence? EndEpoch(nn.Module model) => null;

    /// <inheritdoc/>
    public void SumAcrossRanks(double[] values)
    {
        using var t = torch.tensor(values, dtype: ScalarType.Float64);
        _group.AllReduce(t, ReduceOp.Sum);
        t.data<double>().CopyTo(values, 0);
    }

    /// <inheritdoc/>
    public Dictionary<string, byte[]>? SaveState() => null;

    /// <inheritdoc/>
    public void RestoreState(IReadOnlyDictionary<string, byte[]>? state) { }

    /// <inheritdoc/>
    public void Finish(nn.Module model, TrainingReport report)
    {
        double comm = _reducer?.CommunicationTime.TotalSeconds ?? 0;
        report.SetSection("distributed", new DistributedReport
        {
            Mode = "sync",
            Backend = _group.Backend,
            WorldSize = WorldSize,
            RanksInSync = DataParallel.RanksInSync(_group, model),
            AllReduceSeconds = comm,
            CommFraction = comm / Math.Max(report.TrainSeconds, 1e-9),
            Buckets = _reducer?.Buckets.Count ?? 0,
            BucketSizeMB = _plan.BucketSizeMB,
            Steps = report.Steps,
            BytesCommunicated = BytesCommunicated,
            Shard = "none",
        });
    }

    /// <inheritdoc/>
    public void Dispose() => _reducer?.Dispose();
}

/// <summary>The report section <c>distributed</c> (docs/report.md).</summary>
public sealed class DistributedReport
{
    /// <summary><c>sync</c> or <c>async</c>.</summary>
    [JsonPropertyName("mode")] public string Mode { get; set; } = "sync";
    /// <summary><c>mpi</c> or <c>nccl</c>.</summary>
    [JsonPropertyName("backend")] public string Backend { get; set; } = "";
    /// <summary>Ranks that trained together.</summary>
    [JsonPropertyName("world_size")] public int WorldSize { get; set; }
    /// <summary>Whether every rank ended with bitwise identical parameters and buffers (an all-gathered checksum).</summary>
    [JsonPropertyName("ranks_in_sync")] public bool RanksInSync { get; set; }
    /// <summary>Rank 0's seconds spent waiting for gradient all-reduces (not hidden behind backward).</summary>
    [JsonPropertyName("allreduce_seconds")] public double AllReduceSeconds { get; set; }
    /// <summary><c>allreduce_seconds / train_seconds</c>.</summary>
    [JsonPropertyName("comm_fraction")] public double CommFraction { get; set; }
    /// <summary>Gradient buckets per step.</summary>
    [JsonPropertyName("buckets")] public int Buckets { get; set; }
    /// <summary>The bucket cap after the first bucket, in MiB.</summary>
    [JsonPropertyName("bucket_size_mb")] public double BucketSizeMB { get; set; }
    /// <summary>Optimiser steps each rank took.</summary>
    [JsonPropertyName("steps")] public long Steps { get; set; }
    /// <summary>Bytes rank 0 handed to collectives (gradients, parameters, buffers, votes; payload, not wire traffic).</summary>
    [JsonPropertyName("bytes_communicated")] public long BytesCommunicated { get; set; }

    /// <summary>Sync: what the ranks sharded: <c>none</c> (DDP), <c>optimizer-state</c>, <c>gradients</c> or <c>parameters</c> (ZeRO stages 1-3).</summary>
    [JsonPropertyName("shard"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Shard { get; set; }

    // Async (local SGD) only; absent from a sync run's report.
    /// <summary>Async: local steps between averaging rounds.</summary>
    [JsonPropertyName("sync_every"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? SyncEvery { get; set; }
    /// <summary>Async: synchronous (DDP) steps before local SGD started.</summary>
    [JsonPropertyName("warmup_steps"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? WarmupSteps { get; set; }
    /// <summary>Async: <c>none</c> (model averaging) or <c>nesterov</c> (DiLoCo's outer step).</summary>
    [JsonPropertyName("outer_optimizer"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? OuterOptimizer { get; set; }
    /// <summary>Async: whether a round's all-reduce ran behind the following local steps.</summary>
    [JsonPropertyName("overlap"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public bool? Overlap { get; set; }
    /// <summary>Async: parameter averaging rounds (scheduled ones plus the one that closes each epoch).</summary>
    [JsonPropertyName("sync_rounds"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public long? SyncRounds { get; set; }
    /// <summary>Async: seconds rank 0 waited for averaging (blocking rounds, and overlapped ones not finished in time).</summary>
    [JsonPropertyName("comm_seconds"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public double? CommSeconds { get; set; }
    /// <summary>
    /// Async: averaging time that overlapped computation: each overlapped round is charged the mean all-reduce time
    /// of this run's blocking rounds (timed after a barrier, so without the ranks' skew), less what rank 0 still
    /// waited for overlapped rounds (never below 0).
    /// </summary>
    [JsonPropertyName("comm_seconds_hidden"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public double? CommSecondsHidden { get; set; }
}
