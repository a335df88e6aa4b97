using System;
using System.Linq;
using ModelDsl.Runtime.Distributed;
using ModelDsl.Runtime.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Distributed.TestHost;

/// <summary>
/// Sharded data parallel (<see cref="ShardedDataParallelStrategy"/>, ZeRO stages 1, 2 and 3) against DDP
/// (<see cref="DataParallelStrategy"/>), both driven through the trainer's own step and strategy calls from the same
/// seed: after every step the parameters equal DDP's within 1e-6 relative, for SGD with momentum, Adam and AdamW (and
/// with gradient clipping); the ranks stay bitwise in sync; each rank holds the optimiser state of its partition only;
/// and a sharded checkpoint (each rank's shard, rank 0's index), consolidated, holds DDP's parameters and whole state. Stage 3 keeps only its
/// partition's parameters between steps (the others are empty tensors), gathering them for each forward.
/// </summary>
internal static class Zero
{
    private const int Steps = 6;

    public static int Run(ProcessGroup group)
    {
        var check = new Checker(group.Rank);
        PartitionIsZeroRedundancyOptimizers(group, check);
        foreach (var level in new[] { ShardLevel.OptimizerState, ShardLevel.Gradients, ShardLevel.Parameters })
        {
            foreach (var (optimizer, lr) in new[] { (Optimizer.SGD, 0.05), (Optimizer.Adam, 0.01), (Optimizer.AdamW, 0.01) })
                EqualsDdp(group, check, level, optimizer, lr, clip: 0);
            EqualsDdp(group, check, level, Optimizer.SGD, 0.05, clip: 0.5);
        }
        return check.Finish("zero");
    }

    /// <summary>PyTorch 1.13's greedy partition: largest first, each to the rank with the fewest elements so far.</summary>
    private static void PartitionIsZeroRedundancyOptimizers(ProcessGroup group, Checker check)
    {
        var model = Mlp();
        // Sizes in model order: fc1.weight 256, fc1.bias 32, fc2.weight 512, fc2.bias 16, out.weight 48, out.bias 3.
        var partition = ParameterPartition.Create(model.parameters(), 2);
        check.That(partition.Owner.SequenceEqual(new[] { 1, 1, 0, 1, 1, 1 }), $"owners at 2 ranks are [1, 1, 0, 1, 1, 1], got [{string.Join(", ", partition.Owner)}]");
        check.That(partition.SegmentLength == 512, $"segment length is the longest partition's (512), got {partition.SegmentLength}");
        check.That(partition.Offset.SequenceEqual(new long[] { 0, 256, 0, 288, 304, 352 }), $"offsets inside each owner's segment, got [{string.Join(", ", partition.Offset)}]");
        var one = ParameterPartition.Create(model.parameters(), 1);
        check.That(one.Owner.All(o => o == 0) && one.SegmentLength == 867, "at world size 1 rank 0 owns everything");
    }

    private static void EqualsDdp(ProcessGroup group, Checker check, ShardLevel level, Optimizer kind, double lr, double clip)
    {
        string name = $"{level} {kind}{(clip > 0 ? $" clip {clip}" : "")}";
        var plan = new TrainingPlan
        {
            ModelName = "ZeroProbe", SampleShape = new long[] { 8 }, Loss = Loss.MSE, Optimizer = kind, LearningRate = lr, Momentum = 0.9,
            GradientClipNorm = clip, Mode = ParallelMode.Sync, WorldSize = group.WorldSize,
        };

        var ddpModel = Mlp();
        using var ddpOptimizer = Trainer.CreateOptimizer(plan, ddpModel);
        using var ddp = new DataParallelStrategy(group, plan);
        ddp.Start(ddpModel, 0);
        var ddpStep = new TrainingStep(ddpModel, ddpOptimizer, plan, ddp);

        var model = Mlp();
        using var optimizer = Trainer.CreateOptimizer(plan, model);
        var shardedPlan = plan with { Shard = level };
        using var sharded = new ShardedDataParallelStrategy(group, shardedPlan);
        long fullStateBytes = StateBytes(optimizer);
        sharded.Start(model, 0, optimizer);
        var step = new TrainingStep(model, optimizer, shardedPlan, sharded);

        double worst = 0;
        for (long s = 1; s <= Steps; s++)
        {
            using var scope = NewDisposeScope();
            var (x, y) = Batch(group.Rank, s);
            var want = ddpStep.Run(x, y);
            ddp.AfterStep(ddpModel, s, want.Loss, want.Applied);
            var got = step.Run(x, y);
            sharded.AfterStep(model, s, got.Loss, got.Applied);
            if (level == ShardLevel.Parameters)
            {
                // Between steps the rank holds its partition's parameters only: those equal DDP's, the others are empty.
                long elements = model.parameters().Sum(p => p.numel());
                check.That(elements == sharded.Partition.ElementsOf(group.Rank), $"{name}: after step {s} rank {group.Rank} holds {elements} parameter elements, expected its partition's {sharded.Partition.ElementsOf(group.Rank)}");
                var held = model.parameters().Zip(ddpModel.parameters()).Where(pair => pair.First.numel() > 0).ToList();
                worst = Math.Max(worst, RelativeDifference(cat(held.Select(o => o.First.detach().reshape(-1)).ToArray()), cat(held.Select(o => o.Second.detach().reshape(-1)).ToArray())));
            }
            else worst = Math.Max(worst, RelativeDifference(Flat(model), Flat(ddpModel)));
        }
        check.That(worst < 1e-6, $"{name}: parameters after each of {Steps} steps equal DDP's within 1e-6 relative (worst {worst:E2})");
        if (level == ShardLevel.Parameters)
        {
            sharded.GatherAll();
            double gathered = RelativeDifference(Flat(model), Flat(ddpModel));
            check.That(gathered < 1e-6, $"{name}: all parameters gathered equal DDP's within 1e-6 relative (got {gathered:E2})");
        }
        check.That(DataParallel.RanksInSync(group, model), $"{name}: every rank holds bitwise the same parameters");

        // Each rank keeps its partition's state only (SGD's momentum and Adam's moments: one per owned element, or two).
        long owned = sharded.Partition.ElementsOf(group.Rank);
        long perElement = kind == Optimizer.SGD ? 4 : 8;
        check.That(sharded.OptimizerStateBytes == owned * perElement,
            $"{name}: rank {group.Rank} holds {sharded.OptimizerStateBytes} bytes of optimiser state, expected its {owned} elements' {owned * perElement}");
        if (group.WorldSize > 1)
            check.That(sharded.OptimizerStateBytes < StateBytes(ddpOptimizer), $"{name}: less optimiser state than DDP's {StateBytes(ddpOptimizer)} bytes");
        check.That(kind == Optimizer.SGD || fullStateBytes == 867 * 8, $"{name}: the optimiser started with every parameter's state ({fullStateBytes} bytes)");

        // A checkpoint: every rank writes its shard, rank 0 the index; consolidated, it holds DDP's parameters and
        // optimiser state. No rank gathers the others' state for it.
        ShardedCheckpoints(group, check, name, plan, sharded, model, optimizer, ddpModel, ddpOptimizer);
        check.That(sharded.OptimizerStateBytes == owned * perElement, $"{name}: rank {group.Rank} still holds its partition's state only after the checkpoint");
        using (var scope = NewDisposeScope())
        {
            var (x, y) = Batch(group.Rank, Steps + 1);
            var got = step.Run(x, y);
            sharded.AfterStep(model, Steps + 1, got.Loss, got.Applied);
        }
        check.That(sharded.OptimizerStateBytes == owned * perElement, $"{name}: after the next step rank {group.Rank} holds its partition's state only again");
    }

    private static void ShardedCheckpoints(ProcessGroup group, Checker check, string name, TrainingPlan plan, ShardedDataParallelStrategy sharded,
        Sequential model, OptimizerHelper optimizer, Sequential ddpModel, OptimizerHelper ddpOptimizer)
    {
        // One directory for both ranks: rank 0 draws its name.
        using var id = tensor(new long[] { group.Rank == 0 ? Random.Shared.NextInt64(1, long.MaxValue) : 0 });
        group.Broadcast(id, 0);
        string directory = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"modeldsl-zero-{id.item<long>():x}");
        string index = System.IO.Path.Combine(directory, Checkpoint.FileName);
        var state = new CheckpointState { ModelName = "ZeroProbe", PlanFingerprint = plan.Fingerprint(), Epoch = 1, Step = Steps, Seed = plan.Seed };
        state.StrategyState = sharded.SaveState();
        ShardedCheckpoint.Save(index, model, optimizer, state, sharded, sharded.Level);
        group.Barrier(); // rank 0 wrote the index last
        var info = ShardedCheckpoint.Info(index);
        check.That(info.WorldSize == group.WorldSize && info.Shards.Count == group.WorldSize && info.Shards.All(System.IO.File.Exists),
            $"{name}: the index names {group.WorldSize} shard files, all present (got {info.Shards.Count})");
        check.That(info.Shard == MemoryPlan.ShardName(sharded.Level), $"{name}: the index records shard level {MemoryPlan.ShardName(sharded.Level)} (got {info.Shard})");
        group.Barrier(); // every rank has looked before rank 0 alters and deletes the files
        if (group.Rank == 0)
        {
            var whole = System.IO.Path.Combine(directory, "whole.ckpt");
            var fresh = Mlp();
            using var freshOptimizer = Trainer.CreateOptimizer(plan, fresh);
            ShardedCheckpoint.Consolidate(index, whole, fresh, freshOptimizer, "ZeroProbe");
            double weights = RelativeDifference(Flat(fresh), Flat(ddpModel));
            check.That(weights < 1e-6, $"{name}: the consolidated parameters equal DDP's within 1e-6 relative (got {weights:E2})");
            check.That(RelativeDifference(Flat(fresh), Flat(model)) == 0, $"{name}: the consolidated parameters are bitwise the trained ones");
            double stateDiff = RelativeDifference(FlatState(freshOptimizer), FlatState(ddpOptimizer));
            check.That(stateDiff < 1e-6, $"{name}: the consolidated optimiser state equals DDP's within 1e-6 relative (got {stateDiff:E2})");
            check.That(StateBytes(freshOptimizer) == StateBytes(ddpOptimizer), $"{name}: the consolidated optimiser holds every parameter's state");
            check.That(StepCounts(freshOptimizer).SequenceEqual(StepCounts(ddpOptimizer)), $"{name}: Adam's step counts consolidated");

            // The whole checkpoint loads as any other; and a damaged shard is one error naming its file.
            var again = Mlp();
            using var againOptimizer = Trainer.CreateOptimizer(plan, again);
            var loaded = Checkpoint.Load(whole, again, againOptimizer, "ZeroProbe", plan.Fingerprint());
            check.That(loaded.Step == Steps && RelativeDifference(Flat(again), Flat(fresh)) == 0 && RelativeDifference(FlatState(againOptimizer), FlatState(freshOptimizer)) == 0,
                $"{name}: the consolidated checkpoint loads with its parameters and state");
            var bytes = System.IO.File.ReadAllBytes(info.Shards[^1]);
            bytes[bytes.Length / 2] ^= 0x40;
            System.IO.File.WriteAllBytes(info.Shards[^1], bytes);
            string? message = null;
            try
            {
                ShardedCheckpoint.Consolidate(index, whole, Mlp(), Trainer.CreateOptimizer(plan, Mlp()), "ZeroProbe");
            }
            catch (CheckpointException e)
            {
                message = e.Message;
            }
            check.That(message is not null && message.Contains(info.Shards[^1], StringComparison.Ordinal) && message.Contains("corrupt", StringComparison.Ordinal),
                $"{name}: a damaged shard is refused naming it (got: {message ?? "no error"})");
            System.IO.Directory.Delete(directory, recursive: true);
        }
        group.Barrier();
    }

    private static long StateBytes(OptimizerHelper optimizer) =>
        optimizer.state_dict().State.Sum(s => StateTensors(s).Sum(t => t.numel() * t.element_size()));

    private static Tensor[] StateTensors(OptimizerState state) => state switch
    {
        SGD.State sgd => sgd.momentum_buffer is { } b ? new[] { b } : Array.Empty<Tensor>(),
        Adam.State adam => new[] { adam.exp_avg, adam.exp_avg_sq },
        AdamW.State adamW => new[] { adamW.exp_avg, adamW.exp_avg_sq },
        _ => Array.Empty<Tensor>(),
    };

    private static long[] StepCounts(OptimizerHelper optimizer) =>
        optimizer.state_dict().State.Select(s => s switch { Adam.State a => a.step, AdamW.State w => w.step, _ => 0L }).ToArray();

    private static Tensor FlatState(OptimizerHelper optimizer) =>
        cat(optimizer.state_dict().State.SelectMany(StateTensors).Select(t => t.reshape(-1)).ToArray());

    private static (Tensor X, Tensor Y) Batch(int rank, long step)
    {
        var generator = new Generator((ulong)(500 + step * 16 + rank));
        var x = randn(new long[] { 16, 8 }, generator: generator);
        var y = randn(new long[] { 16, 3 }, generator: generator) * 3 + rank;
        return (x, y);
    }

    private static Sequential Mlp()
    {
        manual_seed(11);
        return nn.Sequential(("fc1", nn.Linear(8, 32)), ("act", nn.Tanh()), ("fc2", nn.Linear(32, 16)), ("act2", nn.Tanh()), ("out", nn.Linear(16, 3)));
    }

    private static Tensor Flat(nn.Module model) => cat(model.parameters().Select(p => p.detach().reshape(-1)).ToArray());

    private static double RelativeDifference(Tensor a, Tensor b)
    {
        using var diff = (a - b).abs().max();
        using var scale = b.abs().max();
        return diff.item<float>() / Math.Max(scale.item<float>(), 1e-30);
    }
}
