using System;
using System.Linq;
using ModelDsl.Runtime.Distributed;
using ModelDsl.Runtime.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Distributed.TestHost;

/// <summary>
/// Local SGD (<see cref="LocalSgdStrategy"/>) against its oracles, driven through the trainer's own step
/// (<see cref="TrainingStep"/>) and strategy calls: with plain SGD, SyncEvery 1, no overlap and no warm-up it equals
/// synchronous DDP; right after every blocking round all ranks hold bitwise the same parameters; and at every step
/// each rank holds what a step-by-step simulation of all replicas in one process says it should, written from the
/// documented rules (warm-up steps average gradients; a blocking round replaces the replicas by θ_g; an overlapped
/// round applies its average one round later, θ_i ← θ_g + (θ_i − s_i); epochs end with a blocking round; DiLoCo's
/// outer Nesterov step on θ_g).
/// </summary>
internal static class LocalSgd
{
    private const double Lr = 0.05;
    private const int StepsPerEpoch = 7;

    public static int Run(ProcessGroup group)
    {
        var check = new Checker(group.Rank);
        SyncEveryOneEqualsDdp(group, check);
        foreach (var (k, warmup, overlap, outer) in new[]
                 {
                     (3, 2, false, OuterOptimizer.None), (3, 2, true, OuterOptimizer.None),
                     (2, 0, true, OuterOptimizer.Nesterov), (4, 1, false, OuterOptimizer.Nesterov),
                 })
            MatchesSimulation(group, check, k, warmup, overlap, outer, steps: 2 * StepsPerEpoch);
        OneRanksNonFiniteLoss_StopsEveryRankAtTheNextRound(group, check);
        return check.Finish("localsgd");
    }

    private static TrainingPlan Plan(int k, int warmup, bool overlap, OuterOptimizer outer, ParallelMode mode = ParallelMode.Async) => new()
    {
        ModelName = "LocalSgdProbe", SampleShape = new long[] { 8 }, Loss = Loss.MSE, Optimizer = Optimizer.SGD, LearningRate = Lr,
        Mode = mode, SyncEvery = k, WarmupSteps = warmup, OverlapAveraging = overlap, OuterOptimizer = outer,
        OuterLearningRate = 0.7, OuterMomentum = 0.9,
    };

    private static void SyncEveryOneEqualsDdp(ProcessGroup group, Checker check)
    {
        var ddpModel = Mlp();
        using (var ddp = new DataParallelStrategy(group, Plan(1, 0, false, OuterOptimizer.None, ParallelMode.Sync)))
            Train(group, ddpModel, ddp, 12, epochEnds: false);
        var localModel = Mlp();
        using (var local = new LocalSgdStrategy(group, Plan(1, 0, false, OuterOptimizer.None)))
            Train(group, localModel, local, 12, epochEnds: false);
        double rel = RelativeDifference(Flat(localModel), Flat(ddpModel));
        check.That(rel < 1e-5, $"SGD, SyncEvery 1, no overlap, no warm-up equals sync DDP within 1e-5 relative (got {rel:E2})");
    }

    private static void MatchesSimulation(ProcessGroup group, Checker check, int k, int warmup, bool overlap, OuterOptimizer outer, int steps)
    {
        string name = $"k={k} warmup={warmup} overlap={overlap} outer={outer}";
        var model = Mlp();
        using var strategy = new LocalSgdStrategy(group, Plan(k, warmup, overlap, outer));
        var simulation = new Simulation(group.WorldSize, k, warmup, overlap, outer == OuterOptimizer.Nesterov);
        var averager = new PeriodicModelAverager(k, warmup);
        double worst = 0;
        int blockingRoundsInSync = 0, blockingRounds = 0;
        Train(group, model, strategy, steps, epochEnds: true, afterStep: (step, epochEnded) =>
        {
            simulation.Step(step - 1, epochEnded);
            worst = Math.Max(worst, RelativeDifference(Flat(model), simulation.Replicas[group.Rank]));
            bool blocking = epochEnded || (!overlap && averager.AveragesAt(step - 1)) || step - 1 < warmup;
            if (blocking)
            {
                blockingRounds++;
                if (DataParallel.RanksInSync(group, model)) blockingRoundsInSync++;
            }
        });
        check.That(worst < 1e-5, $"{name}: every step's parameters equal the simulation's within 1e-5 relative (worst {worst:E2})");
        check.That(blockingRoundsInSync == blockingRounds, $"{name}: ranks bitwise in sync after {blockingRoundsInSync} of {blockingRounds} blocking rounds and warm-up steps");
        long expectedRounds = simulation.Rounds;
        check.That(strategy.Rounds == expectedRounds, $"{name}: {strategy.Rounds} averaging rounds, the simulation {expectedRounds}");
    }

    /// <summary>
    /// The last rank's loss is NaN at step 5 alone; with SyncEvery 3 the rounds follow steps 1, 4 and 7, so every rank
    /// goes on without waiting until step 7, where all learn of step 5 and stop together.
    /// </summary>
    private static void OneRanksNonFiniteLoss_StopsEveryRankAtTheNextRound(ProcessGroup group, Checker check)
    {
        var model = Mlp();
        using var strategy = new LocalSgdStrategy(group, Plan(3, 0, true, OuterOptimizer.None));
        strategy.Start(model, 0);
        var trainingStep = new TrainingStep(model, optim.SGD(model.parameters(), Lr), Loss.MSE, 0, strategy);
        Divergence? stopped = null;
        long stoppedAt = 0;
        for (long step = 1; step <= 12 && stopped is null; step++)
        {
            using var scope = NewDisposeScope();
            var (x, y) = Batch(group.Rank, group.WorldSize, step - 1);
            if (step == 5 && group.Rank == group.WorldSize - 1) x = x * double.NaN;
            var result = trainingStep.Run(x, y);
            check.That(result.Applied == (step != 5 || group.Rank != group.WorldSize - 1), $"step {step}: a non-finite loss skips the update on its own rank only");
            stopped = strategy.AfterStep(model, step, result.Loss, result.Applied);
            stoppedAt = step;
        }
        check.That(stopped is { Step: 5 } && double.IsNaN(stopped.Value.Loss) && stoppedAt == 7,
            $"every rank stops at the round after step 7 naming step 5 and NaN (got {stopped?.ToString() ?? "no stop"} at step {stoppedAt})");
    }

    /// <summary>The trainer's step and strategy calls over <paramref name="steps"/> steps of this rank's batches.</summary>
    private static void Train(ProcessGroup group, Sequential model, ITrainingStrategy strategy, int steps, bool epochEnds, Action<long, bool>? afterStep = null)
    {
        strategy.Start(model, 0);
        var optimizer = optim.SGD(model.parameters(), Lr);
        var trainingStep = new TrainingStep(model, optimizer, Loss.MSE, 0, strategy);
        for (long step = 1; step <= steps; step++)
        {
            using (var scope = NewDisposeScope())
            {
                var (x, y) = Batch(group.Rank, group.WorldSize, step - 1);
                var result = trainingStep.Run(x, y);
                strategy.AfterStep(model, step, result.Loss, result.Applied);
            }
            bool epochEnded = epochEnds && step % StepsPerEpoch == 0;
            if (epochEnded) strategy.EndEpoch(model);
            afterStep?.Invoke(step, epochEnded);
        }
    }

    /// <summary>Rank <paramref name="rank"/>'s batch at step <paramref name="step"/>: 8 rows, different on every rank.</summary>
    private static (Tensor X, Tensor Y) Batch(int rank, int worldSize, long step)
    {
        var generator = new Generator((ulong)(1000 + step * 16 + rank));
        var x = randn(new long[] { 8, 8 }, generator: generator);
        var y = randn(new long[] { 8, 3 }, generator: generator) + rank;
        return (x, y);
    }

    private static Sequential Mlp()
    {
        manual_seed(42);
        return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3));
    }

    private static Tensor Flat(nn.Module model) => cat(model.parameters().Select(p => p.detach().reshape(-1)).ToArray());

    private static double RelativeDifference(Tensor a, Tensor b) =>
        (a - b).abs().max().item<float>() / Math.Max(1e-12, b.abs().max().item<float>());

    /// <summary>All replicas of a local SGD run in one process, stepped by the documented rules (plain tensor math).</summary>
    private sealed class Simulation
    {
        private readonly int _world, _k, _warmup;
        private readonly bool _overlap, _nesterov;
        private readonly Sequential[] _models;
        private readonly optim.Optimizer[] _optimizers;
        private Tensor _global;
        private Tensor? _momentum, _pendingMean;
        private Tensor[]? _snapshots;
        private int _localSteps;

        public Simulation(int world, int k, int warmup, bool overlap, bool nesterov)
        {
            (_world, _k, _warmup, _overlap, _nesterov) = (world, k, warmup, overlap, nesterov);
            _models = Enumerable.Range(0, world).Select(_ => Mlp()).ToArray();
            _optimizers = _models.Select(m => (optim.Optimizer)optim.SGD(m.parameters(), Lr)).ToArray();
            _global = Flat(_models[0]);
        }

        public Tensor[] Replicas => _models.Select(Flat).ToArray();
        public long Rounds { get; private set; }

        public void Step(long t, bool epochEnd)
        {
            for (int j = 0; j < _world; j++)
            {
                _optimizers[j].zero_grad();
                var (x, y) = Batch(j, _world, t);
                nn.functional.mse_loss(_models[j].call(x), y).backward();
            }
            if (t < _warmup)
            {
                // Warm-up: a DDP step, every replica applies the mean gradient.
                var grads = _models.Select(m => m.parameters().Select(p => p.grad!).ToArray()).ToArray();
                for (int i = 0; i < grads[0].Length; i++)
                {
                    var mean = grads.Select(g => g[i] / _world).Aggregate((a, b) => a + b);
                    foreach (var g in grads) g[i].copy_(mean);
                }
            }
            foreach (var o in _optimizers) o.step();

            if (t < _warmup)
            {
                if (t == _warmup - 1) _global = Flat(_models[0]);
            }
            else
            {
                _localSteps++;
                if ((t - _warmup) % _k == 0)
                {
                    if (_overlap)
                    {
                        ApplyPending();
                        _snapshots = Replicas;
                        _pendingMean = Mean(_snapshots);
                        Rounds++;
                    }
                    else BlockingRound();
                }
            }
            if (epochEnd)
            {
                ApplyPending();
                if (_localSteps > 0) BlockingRound();
            }
        }

        private void BlockingRound()
        {
            _global = NewGlobal(Mean(Replicas));
            foreach (var m in _models) Set(m, _global);
            _localSteps = 0;
            Rounds++;
        }

        private void ApplyPending()
        {
            if (_pendingMean is null) return;
            _global = NewGlobal(_pendingMean);
            for (int j = 0; j < _world; j++) Set(_models[j], _global + (Flat(_models[j]) - _snapshots![j]));
            (_pendingMean, _snapshots) = (null, null);
        }

        private Tensor NewGlobal(Tensor mean)
        {
            if (!_nesterov) return mean;
            var delta = _global - mean;
            _momentum = _momentum is null ? delta : 0.9 * _momentum + delta;
            return _global - 0.7 * (delta + 0.9 * _momentum);
        }

        private Tensor Mean(Tensor[] replicas) => replicas.Select(r => r / _world).Aggregate((a, b) => a + b);

        private static void Set(nn.Module model, Tensor flat)
        {
            using var noGrad = no_grad();
            long offset = 0;
            foreach (var p in model.parameters())
            {
                p.copy_(flat.narrow(0, offset, p.numel()).view(p.shape));
                offset += p.numel();
            }
        }
    }
}
