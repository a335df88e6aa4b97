using System;
using System.Diagnostics;
using System.Linq;
using ModelDsl;
using ModelDsl.Runtime.Distributed;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Distributed.TestHost;

/// <summary>
/// DDP gradient averaging against its oracles: SEMANTICS.md D6; the single-process gradient of the whole batch
/// (each rank holds half of it, and the mean of the halves' gradients is the whole batch's gradient); bitwise
/// agreement between ranks and between the blocking and the overlapped paths; parameters broadcast from rank 0.
/// </summary>
internal static class Ddp
{
    public static int Run(ProcessGroup group)
    {
        var check = new Checker(group.Rank);
        int w = group.WorldSize;

        // D6: W = 2, grads [1, 2] and [3, -4] -> [2, -1] on both ranks.
        if (w == 2)
        {
            using var p = new Parameter(zeros(2));
            p.grad = group.Rank == 0 ? tensor(new float[] { 1, 2 }) : tensor(new float[] { 3, -4 });
            using var reducer = new GradientReducer(group, new[] { p });
            reducer.Synchronize();
            check.That(p.grad!.data<float>().ToArray().SequenceEqual(new float[] { 2, -1 }), $"D6: averaged [{string.Join(", ", p.grad!.data<float>().ToArray())}], expected [2, -1]");
        }

        // Replicas start different (seeded by rank); BroadcastParameters makes them rank 0's.
        var model = Mlp(seed: 100 + group.Rank);
        bool differentBefore = !DataParallel.RanksInSync(group, model);
        check.That(w == 1 || differentBefore, "replicas initialised with different seeds are reported out of sync");
        DataParallel.BroadcastParameters(group, model);
        check.That(DataParallel.RanksInSync(group, model), "after BroadcastParameters every rank holds rank 0's parameters");
        var reference = Mlp(seed: 100);
        check.That(DataParallel.Checksum(reference) == DataParallel.Checksum(model), "the broadcast parameters are bitwise rank 0's initial ones");

        // One batch of 64 rows, the same on every rank; rank r takes rows [r*64/W, (r+1)*64/W).
        manual_seed(7);
        using var x = randn(64, 32);
        using var y = randn(64, 8);
        long per = 64 / w;
        using var xs = x.narrow(0, group.Rank * per, per);
        using var ys = y.narrow(0, group.Rank * per, per);

        // Caps of 1 KiB then 2 KiB give one bucket per layer (the layers hold 8.4 KB, 16.6 KB and 2.1 KB of gradients).
        using var reducer2 = new GradientReducer(group, model.parameters(), bucketSizeMB: 2.0 / 1024, firstBucketSizeMB: 1.0 / 1024);
        check.That(reducer2.Buckets.Count >= 3, $"small caps give several buckets, got {reducer2.Buckets.Count}");
        check.That(reducer2.Buckets[0].ParameterIndices[0] == reducer2.Parameters.Count - 1, "the first bucket starts with the last parameter (gradient-ready order)");

        Step(model, xs, ys);
        reducer2.Synchronize();
        var averaged = Gradients(model);

        // Oracle: the whole batch in this one process.
        Step(reference, x, y);
        var whole = Gradients(reference);
        using (var diff = (averaged - whole).abs().max())
        using (var scale = whole.abs().max())
        {
            double rel = diff.item<float>() / scale.item<float>();
            check.That(rel < 1e-5, $"averaged gradients equal the whole batch's within 1e-5 relative (got {rel:E2})");
        }
        check.That(GradientsInSync(group, averaged), "averaged gradients are bitwise identical on every rank");

        // The overlapped path gives bitwise the same result, and really starts buckets during backward.
        var overlapModel = Mlp(seed: 100);
        using var overlapReducer = new GradientReducer(group, overlapModel.parameters(), bucketSizeMB: 2.0 / 1024, firstBucketSizeMB: 1.0 / 1024);
        int hooked = overlapReducer.EnableOverlap(overlapModel);
        check.That(hooked == (w > 1 ? 3 : 0), $"the three Linear layers get the overlap hook (none in a group of one), got {hooked}");
        Step(overlapModel, xs, ys);
        overlapReducer.Synchronize();
        using (var overlapped = Gradients(overlapModel))
            check.That(BitwiseEqual(overlapped, averaged), "the overlapped path's gradients are bitwise the blocking path's");
        if (w > 1)
            check.That(overlapReducer.BucketsStartedDuringBackward >= 1, $"buckets started during backward: {overlapReducer.BucketsStartedDuringBackward} of {overlapReducer.Buckets.Count}");

        // A few optimiser steps keep the replicas bitwise identical.
        using var optimizer = optim.SGD(model.parameters(), 0.1);
        for (int step = 0; step < 5; step++)
        {
            optimizer.zero_grad();
            Step(model, xs, ys);
            reducer2.Synchronize();
            optimizer.step();
        }
        check.That(DataParallel.RanksInSync(group, model), "after 5 SGD steps the replicas are bitwise identical");
        // From the second step on the gradients are views of the buckets (zeroed in place, accumulated into by backward):
        // the 5 steps still equal 5 whole-batch steps in one process.
        var wholeBatch = Mlp(seed: 100);
        using (var wholeOptimizer = optim.SGD(wholeBatch.parameters(), 0.1))
        {
            for (int step = 0; step < 5; step++)
            {
                wholeOptimizer.zero_grad();
                Step(wholeBatch, x, y);
                wholeOptimizer.step();
            }
        }
        using (var mine = State(model, buffers: false))
        using (var theirs = State(wholeBatch, buffers: false))
        using (var diff = (mine - theirs).abs().max())
        using (var scale = theirs.abs().max())
        {
            double rel = diff.item<float>() / scale.item<float>();
            check.That(rel < 1e-5, $"5 DDP steps equal 5 whole-batch steps within 1e-5 relative (got {rel:E2})");
        }

        averaged.Dispose();
        whole.Dispose();

        SyncBatchNormMatchesTheWholeBatch(group, check);
        TrainerStep_TakesOneCollective_AndEqualsTheSeparateVoteAndBroadcast(group, check);
        return check.Finish("ddp");
    }

    /// <summary>
    /// The trainer's DDP step sends its finiteness vote and rank 0's BatchNorm buffers in the gradient all-reduce: one
    /// collective per step (counted), with parameters and buffers bitwise equal to the three-collective sequence it
    /// replaces (vote before backward, gradients, buffer broadcast after the step), and a NaN on the last rank at step
    /// 4 skipping that step on every rank.
    /// </summary>
    private static void TrainerStep_TakesOneCollective_AndEqualsTheSeparateVoteAndBroadcast(ProcessGroup group, Checker check)
    {
        using var counting = new Accumulation.CountingGroup(group);
        var plan = new ModelDsl.Runtime.Training.TrainingPlan
        {
            ModelName = "DdpStepProbe", SampleShape = new long[] { 8 }, Loss = Loss.CrossEntropy,
            Optimizer = Optimizer.Adam, LearningRate = 0.01, Mode = ParallelMode.Sync, WorldSize = group.WorldSize,
        };
        var fused = BnMlp();
        var separate = BnMlp();
        using var fusedOptimizer = ModelDsl.Runtime.Training.Trainer.CreateOptimizer(plan, fused);
        using var separateOptimizer = ModelDsl.Runtime.Training.Trainer.CreateOptimizer(plan, separate);
        using var fusedDdp = new DataParallelStrategy(counting, plan);
        using var separateDdp = new DataParallelStrategy(group, plan);
        fusedDdp.Start(fused, 0);
        separateDdp.Start(separate, 0);
        var step = new ModelDsl.Runtime.Training.TrainingStep(fused, fusedOptimizer, plan, fusedDdp);

        bool oneEach = true, equal = true, skippedTogether = true;
        for (long s = 1; s <= 4; s++)
        {
            using var scope = NewDisposeScope();
            var generator = new Generator((ulong)(500 + 16 * s + group.Rank));
            var x = randn(new long[] { 6, 8 }, generator: generator);
            if (s == 4 && group.Rank == group.WorldSize - 1) x = x * double.NaN;
            var y = randint(0, 3, new long[] { 6 }, generator: generator);

            long before = counting.Collectives;
            var result = step.Run(x, y);
            fusedDdp.AfterStep(fused, s, result.Loss, result.Applied);
            oneEach &= counting.Collectives == before + (group.WorldSize > 1 ? 1 : 0); // a group of one needs none
            skippedTogether &= result.Applied == (s != 4);

            // The sequence the fused step replaces, on the same batches.
            var loss = nn.functional.cross_entropy(separate.call(x), y);
            bool finite = double.IsFinite(loss.item<float>());
            if (separateDdp.AllFinite(finite))
            {
                separateOptimizer.zero_grad();
                loss.backward();
                separateDdp.SynchronizeGradients(separate);
                separateOptimizer.step();
                separateDdp.AfterStep(separate, s, loss.item<float>(), applied: true);
            }
            // A skipped step ends training (the trainer stops on it): its forward's statistics are not compared.
            equal &= BitwiseEqual(State(fused, buffers: s < 4), State(separate, buffers: s < 4));
        }
        check.That(oneEach, "the trainer's DDP step issues one collective (vote, gradients and buffers together)");
        check.That(skippedTogether, "a NaN on the last rank at step 4 skips that step on every rank");
        check.That(equal, "parameters and BatchNorm buffers bitwise equal to the separate vote, all-reduce and broadcast after every step");
        check.That(DataParallel.RanksInSync(group, fused), "every rank holds the same parameters and buffers (rank 0's buffers arrived with the skipped step's all-reduce)");
    }

    private static Sequential BnMlp()
    {
        manual_seed(31);
        return nn.Sequential(("fc1", nn.Linear(8, 16)), ("norm", nn.BatchNorm1d(16)), ("act", nn.ReLU()), ("out", nn.Linear(16, 3)));
    }

    private static Tensor State(nn.Module model, bool buffers) =>
        cat(model.parameters().Select(p => p.detach().reshape(-1))
            .Concat(buffers ? model.buffers().Where(b => b.is_floating_point()).Select(b => b.reshape(-1)) : Enumerable.Empty<Tensor>()).ToArray());

    /// <summary>
    /// A conv + BatchNorm model on half a batch per rank with SyncBatchNorm against the same model with plain
    /// BatchNorm on the whole batch in one process: gradients and running statistics agree.
    /// </summary>
    private static void SyncBatchNormMatchesTheWholeBatch(ProcessGroup group, Checker check)
    {
        manual_seed(5);
        var model = new ConvBn(group);
        manual_seed(5);
        var reference = new ConvBn(null);
        manual_seed(8);
        using var x = randn(64, 1, 8, 8) * 3 + 1;
        using var y = randn(64, 3);
        long per = 64 / group.WorldSize;
        using var xs = x.narrow(0, group.Rank * per, per);
        using var ys = y.narrow(0, group.Rank * per, per);
        using var reducer = new GradientReducer(group, model.parameters());
        using (var scope = NewDisposeScope())
            nn.functional.mse_loss(model.call(xs), ys).backward();
        reducer.Synchronize();
        using (var scope = NewDisposeScope())
            nn.functional.mse_loss(reference.call(x), y).backward();

        using var got = Gradients(model);
        using var want = Gradients(reference);
        double rel = (got - want).abs().max().item<float>() / want.abs().max().item<float>();
        check.That(rel < 1e-5, $"SyncBatchNorm: gradients equal the whole batch's with plain BatchNorm within 1e-5 relative (got {rel:E2})");
        foreach (var (name, a, b) in new[] { ("running_mean", model.Norm.running_mean!, reference.Norm.running_mean!), ("running_var", model.Norm.running_var!, reference.Norm.running_var!) })
        {
            double r = (a - b).abs().max().item<float>() / b.abs().max().item<float>();
            check.That(r < 1e-5, $"SyncBatchNorm: {name} equals the whole batch's within 1e-5 relative (got {r:E2})");
        }
        check.That(model.Norm.num_batches_tracked!.item<long>() == 1, "SyncBatchNorm counts the batch");
    }

    private sealed class ConvBn : nn.Module<Tensor, Tensor>
    {
        private readonly ProcessGroup? _group;
        private readonly Conv2d conv;
        private readonly BatchNorm2d norm;
        private readonly Linear fc;

        public ConvBn(ProcessGroup? group) : base(nameof(ConvBn))
        {
            _group = group;
            conv = nn.Conv2d(1, 4, 3, padding: 1);
            norm = nn.BatchNorm2d(4);
            fc = nn.Linear(4 * 8 * 8, 3);
            RegisterComponents();
        }

        public BatchNorm2d Norm => norm;

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            var h = conv.call(input);
            // A SyncBatchNorm over the same parameters and buffers (what DataParallelStrategy swaps in for a generated model).
            h = _group is null ? norm.call(h) : new SyncBatchNorm(_group, norm).call(h);
            return fc.call(nn.functional.relu(h).flatten(1)).MoveToOuterDisposeScope();
        }
    }

    private static Sequential Mlp(int seed)
    {
        manual_seed(seed);
        return nn.Sequential(("fc1", nn.Linear(32, 64)), ("act", nn.Tanh()), ("fc2", nn.Linear(64, 64)), ("act2", nn.Tanh()), ("out", nn.Linear(64, 8)));
    }

    private static void Step(Sequential model, Tensor x, Tensor y)
    {
        using var scope = NewDisposeScope();
        var loss = nn.functional.mse_loss(model.call(x), y);
        loss.backward();
    }

    private static Tensor Gradients(nn.Module model) =>
        cat(model.parameters().Select(p => p.grad!.reshape(-1)).ToArray());

    private static bool BitwiseEqual(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape))
            return false;
        // Compare the bits, not the values (-0.0 == 0.0 and NaN != NaN would hide or invent differences).
        using var ac = a.contiguous();
        using var bc = b.contiguous();
        return ac.bytes.SequenceEqual(bc.bytes);
    }

    private static bool GradientsInSync(ProcessGroup group, Tensor gradients)
    {
        var all = group.AllGather(gradients);
        bool same = all.All(t => BitwiseEqual(t, all[0]));
        foreach (var t in all)
            t.Dispose();
        return same;
    }
}
