using ModelDsl.Runtime.Training;

namespace ModelDsl.Generators.Parsing
{
    /// <summary>
    /// The compile-time memory plan of a model with [Train]: its parameter tensors and activation bytes per sample from
    /// the inferred shapes (the layer kinds' ParameterTensors and ActivationBytes), the per-rank table by shard level
    /// (the shared MemoryPlan's formula, which the run's report uses too) and the MemoryBudgetMB check (MD0430).
    /// </summary>
    internal static class MemoryPlanner
    {
        private const double MiB = 1024.0 * 1024.0;
        private static readonly int[] WorldSizes = { 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024 };

        /// <summary>
        /// <paramref name="train"/> with its memory plan, or unchanged when a shape is unknown at compile time; reports
        /// MD0430 on <c>MemoryBudgetMB</c> when the plan at the declared world size and shard level is above it.
        /// </summary>
        public static TrainSpec Plan(string modelName, TrainSpec train, ParallelSpec? parallel, IReadOnlyList<LayerSpec> layers, Dim[]? input,
            AttributeData trainAttribute, Action<DiagnosticDescriptor, Location?, string[]> report)
        {
            try
            {
                return PlanChecked(modelName, train, parallel, layers, input, trainAttribute, report);
            }
            catch (OverflowException)
            {
                return train; // sizes past long's range: MD0111 reports them where they arise; the plan is left out
            }
        }

        private static TrainSpec PlanChecked(string modelName, TrainSpec train, ParallelSpec? parallel, IReadOnlyList<LayerSpec> layers, Dim[]? input,
            AttributeData trainAttribute, Action<DiagnosticDescriptor, Location?, string[]> report)
        {
            if (Model(train, layers, input) is not { } model) return train;
            int worldSize = parallel?.WorldSize ?? 1;
            var shard = parallel?.Values.FirstOrDefault(v => v.Name == nameof(ParallelAttribute.Shard)) is { } declared
                && Enum.TryParse<ShardLevel>((string)declared.Value, out var level) ? level : ShardLevel.None;
            var optimizer = (Optimizer)Enum.Parse(typeof(Optimizer), train.Optimizer);
            // The declared precision and recomputation: the plan the compiler prints and checks is the declared run's.
            var precision = Declared(train, nameof(TrainAttribute.Precision)) == nameof(Precision.BFloat16) ? MemoryPrecision.BFloat16 : MemoryPrecision.Float32;
            bool recompute = Declared(train, nameof(TrainAttribute.Recompute)) == nameof(Recompute.Blocks);
            string description = MemoryPlan.Describe(optimizer, train.Momentum, precision, worldSize, train.BatchSize, recompute);
            var table = MemoryPlan.Table(model, optimizer, train.Momentum, precision, worldSize, train.BatchSize, recompute: recompute)
                .TrimEnd('\n').Split('\n');

            if (train.MemoryBudgetMB > 0)
            {
                var bytes = MemoryPlan.For(model, optimizer, train.Momentum, precision, shard, worldSize, train.BatchSize, recompute: recompute);
                if (bytes.Total > train.MemoryBudgetMB * MiB)
                {
                    var (term, largest) = bytes.Largest();
                    string fit = Fit(model, optimizer, train.Momentum, precision, recompute, shard, worldSize, train.BatchSize, train.MemoryBudgetMB * MiB);
                    report(DiagnosticDescriptors.MemoryOverBudget,
                        LayerAttributeReader.For(trainAttribute).ArgumentLocation(nameof(TrainAttribute.MemoryBudgetMB)),
                        new[] { modelName, Mb(bytes.Total), description, PlanArguments.Num(train.MemoryBudgetMB), term, Mb(largest), fit });
                }
            }
            return train with
            {
                Memory = new MemorySpec(model.ParameterTensors.ToEquatableArray(), model.ActivationBytesPerSample, model.ActivationBytesPerSampleBf16,
                    description, table.ToEquatableArray())
                {
                    Recomputed = layers.Any(l => l.Kind.IsRecomputedBlock) ? (model.RecomputedActivationBytesPerSample, model.RecomputedActivationBytesPerSampleBf16) : null,
                },
            };
        }

        /// <summary>The enum member a [Train] value was written as, or null when it was left at its default.</summary>
        private static string? Declared(TrainSpec train, string name) =>
            train.Values.FirstOrDefault(v => v.Name == name)?.Value as string;


        /// <summary>
        /// What would fit the budget, as a sentence: a higher shard level at the declared world size, else sharding over
        /// more ranks, else a smaller batch; else what the model state alone needs.
        /// </summary>
        private static string Fit(MemoryModel model, Optimizer optimizer, double momentum, MemoryPrecision precision, bool recompute, ShardLevel shard,
            int worldSize, int batch, double budget)
        {
            MemoryBytes At(ShardLevel level, int ranks, int samples) => MemoryPlan.For(model, optimizer, momentum, precision, level, ranks, samples, recompute: recompute);
            var implemented = new[] { ShardLevel.OptimizerState, ShardLevel.Gradients, ShardLevel.Parameters };
            if (worldSize > 1)
                foreach (var level in implemented.Where(l => l > shard))
                    if (At(level, worldSize, batch).Total <= budget)
                        return $"Shard = ShardLevel.{level} would make it {Mb(At(level, worldSize, batch).Total)} MiB";
            foreach (int ranks in WorldSizes.Where(n => n > worldSize))
                foreach (var level in implemented.Where(l => l >= shard))
                    if (At(level, ranks, batch).Total <= budget)
                        return $"[Parallel(ParallelMode.Sync, WorldSize = {ranks}, Shard = ShardLevel.{level})] would make it {Mb(At(level, ranks, batch).Total)} MiB per rank";
            var state = At(shard, worldSize, 0);
            long perSample = model.ActivationBytes(precision, recompute);
            if (state.Total < budget && perSample > 0)
            {
                long samples = (long)((budget - state.Total) / perSample);
                if (samples >= 1)
                    return $"BatchSize = {samples} would make it {Mb(At(shard, worldSize, (int)Math.Min(samples, int.MaxValue)).Total)} MiB " +
                           $"(GradientAccumulation = {(batch + samples - 1) / samples} keeps about {batch} samples per step)";
            }
            var stage3 = At(ShardLevel.Parameters, Math.Max(worldSize, 2), batch);
            return $"the model state alone is {Mb(state.Total)} MiB at Shard = ShardLevel.{shard}; no shard level fits it on up to {WorldSizes[WorldSizes.Length - 1]} ranks " +
                   $"(ShardLevel.Parameters, ZeRO stage 3, makes it {Mb(stage3.Total)} MiB at WorldSize = {Math.Max(worldSize, 2)})";
        }

        /// <summary>
        /// The model's memory facts: every layer's parameter tensors, and the activation bytes one sample leaves for
        /// backward (each layer's, from its inferred output shape, plus cross-entropy's log-softmax of the output); null
        /// when a shape holds a size unknown at compile time.
        /// </summary>
        public static MemoryModel? Model(TrainSpec train, IReadOnlyList<LayerSpec> layers, Dim[]? input)
        {
            if (input is null || input.Length == 0 || layers.Count == 0) return null;
            // The per-sample dims of the input bind its symbols (a language model's T is its SequenceLength).
            var symbols = new Dictionary<string, long>(StringComparer.Ordinal);
            for (int i = 1; i < input.Length && i - 1 < train.SampleShape.Count; i++)
                if (!input[i].IsConcrete && input[i].Symbol is { } symbol) symbols[symbol] = train.SampleShape[i - 1];

            // Per arithmetic (0: fp32, 1: bf16 mixed precision): the plain run's bytes, and with Recompute.Blocks the bytes
            // kept after the forward plus the largest single block's internals (alive while its backward runs it again).
            // Under bf16 each layer's output dtype follows its autocast policy from the stream before it (float32 input,
            // or an embedding's float32 output, to start).
            var plain = new long[2];
            var kept = new long[2];
            var largestBlock = new long[2];
            long lastElements = 0;
            int stream = 4;
            foreach (var layer in layers)
            {
                if (PerSample(layer.OutputText, symbols) is not { } elements) return null;
                int mixedOutput = layer.Kind.MixedOutputBytes(stream);
                for (int i = 0; i < 2; i++)
                {
                    int output = i == 0 ? 4 : mixedOutput;
                    long bytes = i == 0 ? layer.Kind.ActivationBytes(layer.Args.Own, elements, 4) : layer.Kind.MixedActivationBytes(layer.Args.Own, elements, stream);
                    plain[i] = checked(plain[i] + bytes);
                    // A recomputed block keeps its output, and TorchSharp's autograd Function one more tensor of that size
                    // per output (an empty_like it hands backward for a missing output gradient).
                    if (layer.Args.Own is TransformerArguments t)
                    {
                        // Each copy keeps only its output (the next copy's input); one copy's internals at a time in backward.
                        kept[i] = checked(kept[i] + 2 * t.Repeat * elements * output);
                        largestBlock[i] = Math.Max(largestBlock[i], bytes / Math.Max(1, t.Repeat));
                    }
                    else kept[i] = checked(kept[i] + (layer.Kind.IsRecomputedBlock ? 2 * bytes : bytes)); // a composed [Block] counts its output only
                }
                stream = mixedOutput;
                lastElements = elements;
            }
            if (train.Loss == nameof(Loss.CrossEntropy))
            {
                // cross_entropy = log_softmax (kept for backward) then nll_loss, in float32: under bf16 a bfloat16 output is
                // cast up for it first (one more tensor).
                long fp32 = lastElements * 4, bf16 = lastElements * (stream == 2 ? 8 : 4);
                plain[0] = checked(plain[0] + fp32);
                kept[0] = checked(kept[0] + fp32);
                plain[1] = checked(plain[1] + bf16);
                kept[1] = checked(kept[1] + bf16);
            }
            var tensors = layers.SelectMany(l => l.Kind.ParameterTensors(l)).ToArray();
            return new MemoryModel(tensors, plain[0], plain[1], checked(kept[0] + largestBlock[0]), checked(kept[1] + largestBlock[1]));
        }

        /// <summary>Elements per sample of a layer's output "(B, C, H, W)": every dim but the first (the batch).</summary>
        private static long? PerSample(string shape, IReadOnlyDictionary<string, long> symbols)
        {
            if (!ShapeText.TryParse(shape, out var dims, out _) || dims.Length == 0) return null;
            long elements = 1;
            foreach (var d in dims.Skip(1))
            {
                long size = d.IsConcrete ? d.Size : d.Symbol is { } s && symbols.TryGetValue(s, out long bound) ? bound : -1;
                if (size < 0) return null;
                elements = checked(elements * size);
            }
            return elements;
        }

        private static string Mb(long bytes) => (bytes / MiB).ToString("N1", CultureInfo.InvariantCulture);
    }
}
