using System;
using System.Collections.Generic;
using System.Linq;
using ModelDsl.Runtime.Distributed;
using ModelDsl.Runtime.Training;
using ModelDsl.Runtime.Training.MixedPrecision;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static ModelDsl.Distributed.TestHost.Accumulation;

namespace ModelDsl.Distributed.TestHost;

/// <summary>
/// ZeRO stage 3 with each Transformer layer recomputed in backward, on a small GPT with its head tied to the token table:
/// a recomputed layer's gathered weights are freed right after its forward and gathered again for its recomputation, so
/// after the forward a rank holds its own partition plus the layers outside the blocks only (not the whole model, as
/// without recomputation), and in backward at most two layers' worth more. The arithmetic does not change: in fp32 the
/// parameters after every step equal DDP's within 1e-6 relative (with and without recomputation, and with gradient
/// accumulation), and stage 3 with recomputation equals stage 3 without it bitwise; in bf16 likewise (stage 3 with
/// recomputation equals stage 3 without it, in bf16).
/// </summary>
internal static class Zero3Recompute
{
    private const int Steps = 4, Vocabulary = 17, Width = 32, Layers = 3, Batch = 4, Length = 8;

    public static int Run(ProcessGroup group)
    {
        var check = new Checker(group.Rank);
        var plain = Train(group, check, ShardLevel.None, recompute: false, bf16: false, k: 1);
        var zero3 = Train(group, check, ShardLevel.Parameters, recompute: false, bf16: false, k: 1);
        var zero3Recompute = Train(group, check, ShardLevel.Parameters, recompute: true, bf16: false, k: 1);
        check.That(Relative(zero3, plain) < 1e-6, $"fp32: stage 3 equals DDP within 1e-6 relative (got {Relative(zero3, plain):E2})");
        check.That(Relative(zero3Recompute, plain) < 1e-6, $"fp32: stage 3 with recomputation equals DDP within 1e-6 relative (got {Relative(zero3Recompute, plain):E2})");
        check.That(zero3Recompute.SequenceEqual(zero3), $"fp32: stage 3 with recomputation equals stage 3 without it bitwise (worst {Relative(zero3Recompute, zero3):E2})");

        var plainK = Train(group, check, ShardLevel.None, recompute: false, bf16: false, k: 2);
        var zero3RecomputeK = Train(group, check, ShardLevel.Parameters, recompute: true, bf16: false, k: 2);
        check.That(Relative(zero3RecomputeK, plainK) < 1e-6, $"fp32, 2 micro-batches: stage 3 with recomputation equals DDP within 1e-6 relative (got {Relative(zero3RecomputeK, plainK):E2})");

        var bf16 = Train(group, check, ShardLevel.Parameters, recompute: false, bf16: true, k: 1);
        var bf16Recompute = Train(group, check, ShardLevel.Parameters, recompute: true, bf16: true, k: 1);
        check.That(Relative(bf16Recompute, bf16) < 1e-6, $"bf16: stage 3 with recomputation equals stage 3 without it within 1e-6 relative (got {Relative(bf16Recompute, bf16):E2})");
        check.That(Relative(bf16, plain) > 1e-5, "bf16 did run (its parameters differ from fp32's)");
        return check.Finish("zero3-recompute");
    }

    /// <summary>Trains the GPT <see cref="Steps"/> steps; returns its parameters (gathered), checking what stage 3 held on the way.</summary>
    private static float[] Train(ProcessGroup group, Checker check, ShardLevel level, bool recompute, bool bf16, int k)
    {
        string name = $"{(level == ShardLevel.None ? "DDP" : "stage 3")}{(recompute ? " recompute" : "")}{(bf16 ? " bf16" : "")} k = {k}";
        Console.WriteLine($"rank {group.Rank}: {name}");
        var plan = new TrainingPlan
        {
            ModelName = "Zero3Probe", SampleShape = new long[] { Length }, Loss = Loss.CrossEntropy, Optimizer = Optimizer.Adam, LearningRate = 0.01,
            Mode = ParallelMode.Sync, WorldSize = group.WorldSize, Shard = level, GradientAccumulation = k,
            Precision = bf16 ? Precision.BFloat16 : Precision.Float32,
        };
        using var model = new TinyGpt();
        using var optimizer = Trainer.CreateOptimizer(plan, model);
        using var precision = bf16 ? new BFloat16Training(model, new TinyGpt()) : null;
        var running = (TinyGpt)(precision?.Module ?? model);
        using var recomputed = recompute ? BlockRecompute.Apply(running.Blocks) : null;
        // Counted before the strategy frees the other ranks' parameters.
        long whole = Elements(running), outsideBlocks = whole - Elements(running.Blocks), largestLayer = running.Blocks.Layers.Max(Elements);
        ITrainingStrategy strategy = level == ShardLevel.None ? new DataParallelStrategy(group, plan) : new ShardedDataParallelStrategy(group, plan);
        using var _ = strategy;
        if (precision is not null) strategy.UsePrecision(precision);
        if (strategy is ShardedDataParallelStrategy sharded) sharded.Start(model, 0, optimizer);
        else strategy.Start(model, 0);
        var step = new TrainingStep(model, optimizer, plan, strategy, precision);

        // What the running model holds: after its forward (the loss comes next), and at every layer's start (in backward
        // too: a recomputation runs the layer's forward). Counted in elements of the running model's parameters.
        long afterForward = 0, atLayers = 0;
        var removers = new List<Action>
        {
            running.register_forward_hook((_, _, output) => { afterForward = Math.Max(afterForward, Elements(running)); return output; }).remove,
        };
        foreach (var layer in running.Blocks.Layers)
            removers.Add(layer.register_forward_pre_hook((_, input) => { atLayers = Math.Max(atLayers, Elements(running)); return input; }).remove);

        for (long s = 1; s <= Steps; s++)
        {
            using var scope = NewDisposeScope();
            StepResult result = default;
            for (int m = 0; m < k; m++)
            {
                var (x, y) = Sample(group.Rank, s, m);
                result = step.Run(x, y, 1.0 / k, m == 0, m == k - 1);
            }
            strategy.AfterStep(model, s, result.Loss, result.Applied);
        }
        foreach (var remove in removers) remove();

        if (level == ShardLevel.Parameters && group.WorldSize > 1)
        {
            // Every layer is gathered before it runs; without recomputation every gathered weight stays to the end of backward.
            long owned = OwnedElements(strategy, running, model, precision, group.Rank);
            if (recompute)
            {
                check.That(afterForward <= owned + outsideBlocks && afterForward < whole,
                    $"{name}: after the forward rank {group.Rank} holds {afterForward} parameter elements of {whole}: at most its own {owned} and the {outsideBlocks} outside the blocks");
                check.That(atLayers <= owned + outsideBlocks + 2 * largestLayer,
                    $"{name}: as each layer starts (forward or recomputation) rank {group.Rank} holds {atLayers} elements: at most its own {owned}, the {outsideBlocks} outside the blocks and two layers' {2 * largestLayer}");
            }
            else check.That(afterForward == whole, $"{name}: without recomputation the forward leaves every weight gathered ({afterForward} of {whole} elements)");
        }
        (strategy as ShardedDataParallelStrategy)?.GatherAll();
        check.That(DataParallel.RanksInSync(group, model), $"{name}: every rank holds bitwise the same parameters");
        return Flat(model).data<float>().ToArray();
    }

    /// <summary>Elements of the running model's parameters this rank owns (its own stay whole all along).</summary>
    private static long OwnedElements(ITrainingStrategy strategy, TinyGpt running, TinyGpt master, BFloat16Training? precision, int rank)
    {
        var partition = ((ShardedDataParallelStrategy)strategy).Partition;
        var owned = new HashSet<IntPtr>(partition.OwnedBy(rank).Select(p => p.Handle));
        // The working copy pairs with the master in parameter order (same class).
        var pairs = master.parameters().Zip(running.parameters());
        return pairs.Where(pair => owned.Contains(pair.First.Handle)).GroupBy(pair => pair.Second.Handle).Sum(g => g.First().First.numel());
    }

    private static long Elements(nn.Module module)
    {
        var seen = new HashSet<IntPtr>();
        return module.parameters().Where(p => seen.Add(p.Handle)).Sum(p => p.numel());
    }

    private static (Tensor X, Tensor Y) Sample(int rank, long step, int micro)
    {
        var generator = new Generator((ulong)(700 + step * 64 + micro * 8 + rank));
        var x = randint(0, Vocabulary, new long[] { Batch, Length }, dtype: ScalarType.Int64, generator: generator);
        var y = randint(0, Vocabulary, new long[] { Batch * Length }, dtype: ScalarType.Int64, generator: generator);
        return (x, y);
    }

    private static double Relative(float[] a, float[] b)
    {
        double scale = b.Max(v => Math.Abs(v));
        return a.Zip(b, (p, q) => Math.Abs(p - q)).Max() / Math.Max(scale, 1e-30);
    }

    /// <summary>
    /// CharGpt's shape, small: a token table, three pre-LayerNorm Transformer layers, a LayerNorm and a head tied to the
    /// token table; logits flattened to (B·T, V) for the cross-entropy.
    /// </summary>
    private sealed class TinyGpt : nn.Module<Tensor, Tensor>
    {
        private readonly Embedding tokens;
        private readonly TransformerBlock blocks;
        private readonly LayerNorm norm;
        private readonly Linear head;

        public TinyGpt() : base(nameof(TinyGpt))
        {
            manual_seed(29);
            tokens = nn.Embedding(Vocabulary, Width);
            blocks = new TransformerBlock(Width, heads: 4, repeat: Layers);
            norm = nn.LayerNorm(Width);
            head = nn.Linear(Width, Vocabulary, hasBias: false);
            head.weight = tokens.weight;
            RegisterComponents();
        }

        public TransformerBlock Blocks => blocks;

        // The tied weight once, as a generated model lists it (TorchSharp wraps it anew under the head).
        public override IEnumerable<(string name, Parameter parameter)> named_parameters(bool recurse = true) =>
            base.named_parameters(recurse).Where(named => named.name != "head.weight");

        public override IEnumerable<Parameter> parameters(bool recurse = true) => named_parameters(recurse).Select(named => named.parameter);

        public override Tensor forward(Tensor input) => head.call(norm.call(blocks.call(tokens.call(input)))).reshape(-1, Vocabulary);
    }
}
