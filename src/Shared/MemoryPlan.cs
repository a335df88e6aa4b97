using System.Globalization;
using System.Text;

// Linked into the generator (the compile-time plan, the MemoryBudgetMB check, the table in the generated Plan) and the
// runtime (public: generated plans construct MemoryModel; the report's planned figures and the trainer's printed table),
// so the bytes the compiler plans and the bytes the run reports as planned come from one formula.
namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// The element type training computes in. bf16 is ZeRO's mixed precision: bf16 weights and gradients, an fp32 master
    /// copy of the weights and fp32 optimiser moments (the master copy counts as optimiser state).
    /// </summary>
#if MODELDSL_GENERATOR
    internal
#else
    public
#endif
    enum MemoryPrecision
    {
        /// <summary>fp32 weights, gradients and activations.</summary>
        Float32 = 0,
        /// <summary>bf16 weights, gradients and activations; fp32 master weights and moments.</summary>
        BFloat16 = 1,
    }

    /// <summary>
    /// What the compiler knows of a model's memory: the element count of each trainable parameter tensor, in model order
    /// (a tied weight once), and the bytes of activations one sample leaves for backward, in fp32 and in bf16. Generated
    /// plans create it; <see cref="MemoryPlan"/> turns it into per-rank bytes.
    /// </summary>
#if MODELDSL_GENERATOR
    internal
#else
    public
#endif
    sealed class MemoryModel
    {
        /// <summary>Called by generated code for a model without a block (recomputation keeps what the plain run keeps).</summary>
        public MemoryModel(long[] parameterTensors, long activationBytesPerSample, long activationBytesPerSampleBf16)
            : this(parameterTensors, activationBytesPerSample, activationBytesPerSampleBf16, activationBytesPerSample, activationBytesPerSampleBf16)
        {
        }

        /// <summary>Called by generated code for a model with blocks: the activations also with <c>Recompute.Blocks</c>.</summary>
        public MemoryModel(long[] parameterTensors, long activationBytesPerSample, long activationBytesPerSampleBf16,
            long recomputedActivationBytesPerSample, long recomputedActivationBytesPerSampleBf16)
        {
            ParameterTensors = parameterTensors ?? throw new ArgumentNullException(nameof(parameterTensors));
            ActivationBytesPerSample = activationBytesPerSample;
            ActivationBytesPerSampleBf16 = activationBytesPerSampleBf16;
            RecomputedActivationBytesPerSample = recomputedActivationBytesPerSample;
            RecomputedActivationBytesPerSampleBf16 = recomputedActivationBytesPerSampleBf16;
        }

        /// <summary>Elements of each trainable parameter tensor, in model order.</summary>
        public IReadOnlyList<long> ParameterTensors { get; }

        /// <summary>Bytes of activations per sample in fp32 (see docs/memory.md for what is counted).</summary>
        public long ActivationBytesPerSample { get; }

        /// <summary>The same in bf16 (int64 indices stay 8 bytes).</summary>
        public long ActivationBytesPerSampleBf16 { get; }

        /// <summary>
        /// Bytes of activations per sample in fp32 with <c>Recompute.Blocks</c>: every other layer's, each block's output
        /// (the next one's input, all a block keeps), and the largest single block's internals, alive while its
        /// backward runs it again.
        /// </summary>
        public long RecomputedActivationBytesPerSample { get; }

        /// <summary>The same in bf16.</summary>
        public long RecomputedActivationBytesPerSampleBf16 { get; }

        /// <summary>Ψ: the trainable parameters.</summary>
        public long Parameters => ParameterTensors.Sum();

        /// <summary>Activation bytes per sample at <paramref name="precision"/>, with or without block recomputation.</summary>
        public long ActivationBytes(MemoryPrecision precision, bool recompute = false) => (precision, recompute) switch
        {
            (MemoryPrecision.BFloat16, true) => RecomputedActivationBytesPerSampleBf16,
            (MemoryPrecision.BFloat16, false) => ActivationBytesPerSampleBf16,
            (_, true) => RecomputedActivationBytesPerSample,
            _ => ActivationBytesPerSample,
        };
    }

    /// <summary>One rank's bytes: parameters, gradients, optimiser state and activations.</summary>
#if MODELDSL_GENERATOR
    internal
#else
    public
#endif
    readonly struct MemoryBytes
    {
        /// <summary>Creates the figures.</summary>
        public MemoryBytes(long parameters, long gradients, long optimizerState, long activations)
        {
            Parameters = parameters;
            Gradients = gradients;
            OptimizerState = optimizerState;
            Activations = activations;
        }

        /// <summary>Bytes of parameters.</summary>
        public long Parameters { get; }
        /// <summary>Bytes of gradients.</summary>
        public long Gradients { get; }
        /// <summary>Bytes of optimiser state (momentum, Adam's moments, bf16's fp32 master weights).</summary>
        public long OptimizerState { get; }
        /// <summary>Bytes of activations kept for backward.</summary>
        public long Activations { get; }
        /// <summary>Parameters, gradients and optimiser state: ZeRO's "model states".</summary>
        public long ModelState => Parameters + Gradients + OptimizerState;
        /// <summary>Everything.</summary>
        public long Total => ModelState + Activations;

        /// <summary>The largest term's name and bytes.</summary>
        public (string Name, long Bytes) Largest()
        {
            var terms = new[] { ("parameters", Parameters), ("gradients", Gradients), ("optimizer state", OptimizerState), ("activations", Activations) };
            return terms.OrderByDescending(t => t.Item2).First();
        }
    }

    /// <summary>
    /// The per-rank memory plan: bytes of parameters, gradients, optimiser state and activations a rank holds, by shard
    /// level (ZeRO: stage 1 shards the optimiser state, stage 2 also the gradients, stage 3 also the parameters). A
    /// sharded term is the rank's partition under PyTorch's <c>ZeroRedundancyOptimizer</c> partition of whole
    /// tensors (<see cref="Partition"/>, the one the runtime uses), so a model whose largest tensor exceeds Ψ/N keeps
    /// more than ZeRO's Ψ/N on the rank that owns it; <see cref="FlatShare"/> is ZeRO's and FSDP's flat split.
    /// </summary>
#if MODELDSL_GENERATOR
    internal
#else
    public
#endif
    static class MemoryPlan
    {
        /// <summary>The shard levels, in the order the plan's table lists them.</summary>
        public static readonly ShardLevel[] Levels = { ShardLevel.None, ShardLevel.OptimizerState, ShardLevel.Gradients, ShardLevel.Parameters };

        /// <summary>Bytes of optimiser state per parameter in fp32: SGD 0, with momentum 4 (the buffer), Adam/AdamW 8 (two moments).</summary>
        public static int OptimizerBytesPerParameter(Optimizer optimizer, double momentum) =>
            optimizer == Optimizer.SGD ? (momentum > 0 ? 4 : 0) : 8;

        /// <summary>
        /// Rank <paramref name="rank"/>'s bytes at <paramref name="level"/> over <paramref name="worldSize"/> ranks, with
        /// <paramref name="batchSize"/> samples per micro-batch; <paramref name="rank"/> −1: the rank that holds the most;
        /// <paramref name="recompute"/>: blocks recompute their activations in backward (<c>Recompute.Blocks</c>).
        /// </summary>
        public static MemoryBytes For(MemoryModel model, Optimizer optimizer, double momentum, MemoryPrecision precision,
            ShardLevel level, int worldSize, int batchSize, int rank = -1, bool recompute = false)
        {
            if (model is null) throw new ArgumentNullException(nameof(model));
            worldSize = Math.Max(1, worldSize);
            long all = model.Parameters;
            long activations = checked(model.ActivationBytes(precision, recompute) * Math.Max(0, batchSize));
            bool bf16 = precision == MemoryPrecision.BFloat16;
            int weightBytes = bf16 ? 2 : 4;
            // ZeRO's mixed-precision accounting: 2Ψ bf16 weights + 2Ψ bf16 gradients + (4Ψ master + KΨ moments).
            int stateBytes = OptimizerBytesPerParameter(optimizer, momentum) + (bf16 ? 4 : 0);
            MemoryBytes Of(long share) => new MemoryBytes(
                checked((level >= ShardLevel.Parameters ? share : all) * weightBytes),
                checked((level >= ShardLevel.Gradients ? share : all) * weightBytes),
                checked((level >= ShardLevel.OptimizerState ? share : all) * stateBytes),
                activations);
            if (level == ShardLevel.None || worldSize == 1) return Of(all);
            // Past one rank per tensor the others own nothing: the partition over that many ranks is the same.
            var shares = Shares(model.ParameterTensors, Math.Min(worldSize, Math.Max(1, model.ParameterTensors.Count)));
            return rank >= 0 ? Of(rank < shares.Length ? shares[rank] : 0) : Of(shares.Max());
        }

        /// <summary>
        /// The owner of each tensor as PyTorch 1.13's <c>ZeroRedundancyOptimizer</c> assigns them: largest first (ties in
        /// model order), each to the rank with the fewest elements so far (ties to the lowest rank).
        /// </summary>
        public static int[] Partition(IReadOnlyList<long> tensors, int worldSize)
        {
            if (tensors is null) throw new ArgumentNullException(nameof(tensors));
            if (worldSize < 1) throw new ArgumentOutOfRangeException(nameof(worldSize), worldSize, "worldSize must be at least 1.");
            var owner = new int[tensors.Count];
            var sizes = new long[worldSize];
            // OrderBy is stable: equal sizes keep model order, as Python's sorted does.
            foreach (int i in Enumerable.Range(0, tensors.Count).OrderByDescending(i => tensors[i]))
            {
                int smallest = 0;
                for (int r = 1; r < worldSize; r++) if (sizes[r] < sizes[smallest]) smallest = r;
                owner[i] = smallest;
                sizes[smallest] += tensors[i];
            }
            return owner;
        }

        /// <summary>Elements each rank owns under <see cref="Partition"/>.</summary>
        public static long[] Shares(IReadOnlyList<long> tensors, int worldSize)
        {
            var owner = Partition(tensors, worldSize);
            var shares = new long[worldSize];
            for (int i = 0; i < owner.Length; i++) shares[owner[i]] += tensors[i];
            return shares;
        }

        /// <summary>ZeRO's and FSDP's flat split of Ψ elements: ⌈Ψ / N⌉ per rank.</summary>
        public static long FlatShare(long parameters, int worldSize) => (parameters + worldSize - 1) / Math.Max(1, worldSize);

        /// <summary>
        /// The plan as a table, one row per shard level (one, unsharded, at world size 1), for the rank that holds the
        /// most, in KiB or MiB as the figures' size suits (or GB = 10⁹ bytes when <paramref name="gigabytes"/>, as the ZeRO
        /// paper counts); each line starts with <paramref name="indent"/>.
        /// </summary>
        public static string Table(MemoryModel model, Optimizer optimizer, double momentum, MemoryPrecision precision, int worldSize, int batchSize,
            string indent = "", bool gigabytes = false, bool recompute = false)
        {
            var levels = worldSize > 1 ? Levels : new[] { ShardLevel.None };
            long most = levels.Max(l => For(model, optimizer, momentum, precision, l, worldSize, batchSize, recompute: recompute).Total);
            var (unit, scale) = gigabytes ? ("GB", 1e9) : most < 10L << 20 ? ("KiB", 1024.0) : ("MiB", 1024.0 * 1024.0);
            string F(long bytes) => (bytes / scale).ToString(gigabytes ? "N2" : "N1", CultureInfo.InvariantCulture);
            var rows = new List<string[]> { new[] { "shard", "parameters", "gradients", "optimizer state", "activations", "total " + unit } };
            foreach (var level in levels)
            {
                var b = For(model, optimizer, momentum, precision, level, worldSize, batchSize, recompute: recompute);
                rows.Add(new[] { ShardName(level), F(b.Parameters), F(b.Gradients), F(b.OptimizerState), F(b.Activations), F(b.Total) });
            }
            var widths = Enumerable.Range(0, 6).Select(c => rows.Max(r => r[c].Length)).ToArray();
            var sb = new StringBuilder();
            foreach (var row in rows)
            {
                sb.Append(indent).Append(row[0].PadRight(widths[0]));
                for (int c = 1; c < 6; c++) sb.Append("  ").Append(row[c].PadLeft(widths[c]));
                sb.Append('\n');
            }
            return sb.ToString();
        }

        /// <summary>What the table is for, in words: "Adam, fp32, batch 64 per rank, 2 ranks (the rank that holds the most)".</summary>
        public static string Describe(Optimizer optimizer, double momentum, MemoryPrecision precision, int worldSize, int batchSize, bool recompute = false) =>
            $"{optimizer}{(optimizer == Optimizer.SGD ? momentum > 0 ? " with momentum" : " without momentum" : "")}, " +
            $"{(precision == MemoryPrecision.BFloat16 ? "bf16 mixed precision" : "fp32")}, {(recompute ? "blocks recomputed, " : "")}batch {batchSize} per rank, " +
            $"{worldSize} rank{(worldSize == 1 ? "" : "s")}{(worldSize > 1 ? " (the rank that holds the most)" : "")}";

        /// <summary>The <c>--shard</c> spelling of a level: none, optimizer-state, gradients, parameters.</summary>
        public static string ShardName(ShardLevel level) => level switch
        {
            ShardLevel.OptimizerState => "optimizer-state",
            _ => level.ToString().ToLowerInvariant(),
        };

        /// <summary>The precision's report spelling: fp32 or bf16.</summary>
        public static string PrecisionName(MemoryPrecision precision) => precision == MemoryPrecision.BFloat16 ? "bf16" : "fp32";
    }
}
