using System;
using System.Linq;
using ModelDsl.Runtime.Distributed;
using ModelDsl.Runtime.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Distributed.TestHost;

/// <summary>
/// Gradient accumulation across ranks, through the trainer's own step (<see cref="TrainingStep"/>'s micro-batch form)
/// and strategies: DDP with k micro-batches per step equals one process stepping on the whole batch (every rank's
/// micro-batches together) within 1e-6 relative, for SGD with momentum and Adam; no collective at all runs on the
/// first k−1 micro-batches (counted on the process group), and the last runs one all-reduce: the gradients with the
/// finiteness vote; ZeRO stage 2 (and 1) with accumulation equals DDP with accumulation.
/// </summary>
internal static class Accumulation
{
    internal const int K = 3, MicroBatch = 4, Steps = 4;

    public static int Run(ProcessGroup group)
    {
        var check = new Checker(group.Rank);
        using var counting = new CountingGroup(group);
        foreach (var (optimizer, lr) in new[] { (Optimizer.SGD, 0.05), (Optimizer.Adam, 0.01) })
        {
            DdpEqualsTheWholeBatch(counting, check, optimizer, lr);
            foreach (var level in new[] { ShardLevel.OptimizerState, ShardLevel.Gradients })
                ZeroEqualsDdp(counting, check, level, optimizer, lr);
        }
        return check.Finish("accumulation");
    }

    internal static TrainingPlan Plan(ProcessGroup group, Optimizer kind, double lr) => new()
    {
        ModelName = "AccumulationProbe", SampleShape = new long[] { 8 }, Loss = Loss.MSE, Optimizer = kind, LearningRate = lr,
        Momentum = kind == Optimizer.SGD ? 0.9 : 0, Mode = ParallelMode.Sync, WorldSize = group.WorldSize, GradientAccumulation = K,
    };

    private static void DdpEqualsTheWholeBatch(CountingGroup group, Checker check, Optimizer kind, double lr)
    {
        string name = $"DDP {kind} k = {K}";
        var plan = Plan(group, kind, lr);
        var model = Mlp();
        using var optimizer = Trainer.CreateOptimizer(plan, model);
        using var ddp = new DataParallelStrategy(group, plan);
        ddp.Start(model, 0);
        var step = new TrainingStep(model, optimizer, plan, ddp);

        // The oracle: one process, one step per group on every rank's micro-batches at once.
        var whole = Mlp();
        using var wholeOptimizer = Trainer.CreateOptimizer(plan, whole);
        var wholeStep = new TrainingStep(whole, wholeOptimizer, plan);

        double worst = 0;
        bool quietBeforeLast = true, syncedOnLast = true;
        for (long s = 1; s <= Steps; s++)
        {
            using var scope = NewDisposeScope();
            StepResult result = default;
            for (int m = 0; m < K; m++)
            {
                long before = group.Collectives;
                var (x, y) = Batch(group.Rank, s, m);
                result = step.Run(x, y, weight: 1.0 / K, first: m == 0, last: m == K - 1);
                if (m < K - 1) quietBeforeLast &= group.Collectives == before;
                // The last micro-batch: one all-reduce, the gradient bucket carrying the finiteness vote.
                else syncedOnLast &= group.Collectives == before + (group.WorldSize > 1 ? 1 : 0);
            }
            ddp.AfterStep(model, s, result.Loss, result.Applied);

            var all = Enumerable.Range(0, group.WorldSize).SelectMany(r => Enumerable.Range(0, K).Select(m => Batch(r, s, m))).ToArray();
            wholeStep.Run(cat(all.Select(b => b.X).ToArray()), cat(all.Select(b => b.Y).ToArray()));
            worst = Math.Max(worst, RelativeDifference(Flat(model), Flat(whole)));
        }
        check.That(quietBeforeLast, $"{name}: no collective on the first {K - 1} micro-batches of a step");
        check.That(syncedOnLast, $"{name}: one all-reduce (gradients and the vote) on the last micro-batch");
        check.That(worst < 1e-6, $"{name}: parameters after each of {Steps} steps equal one process at the whole batch of {group.WorldSize * K * MicroBatch} within 1e-6 relative (worst {worst:E2})");
        check.That(DataParallel.RanksInSync(group, model), $"{name}: every rank holds bitwise the same parameters");
    }

    private static void ZeroEqualsDdp(CountingGroup group, Checker check, ShardLevel level, Optimizer kind, double lr)
    {
        string name = $"{level} {kind} k = {K}";
        var plan = Plan(group, kind, lr);
        var ddpModel = Mlp();
        using var ddpOptimizer = Trainer.CreateOptimizer(plan, ddpModel);
        using var ddp = new DataParallelStrategy(group, plan);
        ddp.Start(ddpModel, 0);
        var ddpStep = new TrainingStep(ddpModel, ddpOptimizer, plan, ddp);

        var model = Mlp();
        using var optimizer = Trainer.CreateOptimizer(plan, model);
        var shardedPlan = plan with { Shard = level };
        using var sharded = new ShardedDataParallelStrategy(group, shardedPlan);
        sharded.Start(model, 0, optimizer);
        var step = new TrainingStep(model, optimizer, shardedPlan, sharded);

        double worst = 0;
        bool quietBeforeLast = true;
        for (long s = 1; s <= Steps; s++)
        {
            using var scope = NewDisposeScope();
            StepResult want = default, got = default;
            for (int m = 0; m < K; m++)
            {
                var (x, y) = Batch(group.Rank, s, m);
                want = ddpStep.Run(x, y, 1.0 / K, m == 0, m == K - 1);
                long before = group.Collectives;
                got = step.Run(x, y, 1.0 / K, m == 0, m == K - 1);
                if (m < K - 1) quietBeforeLast &= group.Collectives == before;
            }
            ddp.AfterStep(ddpModel, s, want.Loss, want.Applied);
            sharded.AfterStep(model, s, got.Loss, got.Applied);
            worst = Math.Max(worst, RelativeDifference(Flat(model), Flat(ddpModel)));
        }
        check.That(quietBeforeLast, $"{name}: no collective (no reduce-scatter) on the first {K - 1} micro-batches of a step");
        check.That(worst < 1e-6, $"{name}: parameters after each of {Steps} steps equal DDP's with accumulation within 1e-6 relative (worst {worst:E2})");
        check.That(DataParallel.RanksInSync(group, model), $"{name}: every rank holds bitwise the same parameters");
    }

    internal static (Tensor X, Tensor Y) Batch(int rank, long step, int micro)
    {
        var generator = new Generator((ulong)(900 + step * 64 + micro * 8 + rank));
        var x = randn(new long[] { MicroBatch, 8 }, generator: generator);
        var y = randn(new long[] { MicroBatch, 3 }, generator: generator) * 2 + rank;
        return (x, y);
    }

    internal static Sequential Mlp()
    {
        manual_seed(23);
        return nn.Sequential(("fc1", nn.Linear(8, 32)), ("act", nn.Tanh()), ("fc2", nn.Linear(32, 16)), ("act2", nn.Tanh()), ("out", nn.Linear(16, 3)));
    }

    internal static Tensor Flat(nn.Module model) => cat(model.parameters().Select(p => p.detach().reshape(-1)).ToArray());

    internal static double RelativeDifference(Tensor a, Tensor b)
    {
        using var diff = (a - b).abs().max();
        using var scale = b.abs().max();
        return diff.item<float>() / Math.Max(scale.item<float>(), 1e-30);
    }

    /// <summary>A process group that counts the collectives it passes on to the real one.</summary>
    internal sealed class CountingGroup : ProcessGroup
    {
        private readonly ProcessGroup _inner;

        public CountingGroup(ProcessGroup inner) => _inner = inner;

        /// <summary>Collectives started so far (all-reduce, broadcast, all-gather, reduce-scatter, barrier).</summary>
        public long Collectives { get; private set; }

        public override int Rank => _inner.Rank;
        public override int WorldSize => _inner.WorldSize;
        public override string Backend => _inner.Backend;
        public override void Abort(string reason, int errorCode = 1) => _inner.Abort(reason, errorCode);
        protected override void AllReduceCore(Tensor tensor, ReduceOp op) { Collectives++; _inner.AllReduce(tensor, op); }
        protected override Work AllReduceAsyncCore(Tensor tensor, ReduceOp op) { Collectives++; return _inner.AllReduceAsync(tensor, op); }
        protected override void BroadcastCore(Tensor tensor, int root) { Collectives++; _inner.Broadcast(tensor, root); }
        protected override Tensor[] AllGatherCore(Tensor tensor) { Collectives++; return _inner.AllGather(tensor); }
        protected override void BarrierCore() { Collectives++; _inner.Barrier(); }
        protected override void ReduceScatterCore(Tensor output, Tensor input, ReduceOp op) { Collectives++; _inner.ReduceScatter(output, input, op); }
        protected override void AllGatherIntoCore(Tensor output, Tensor input) { Collectives++; _inner.AllGather(output, input); }
    }
}
