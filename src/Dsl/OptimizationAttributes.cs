#if MODELDSL_GENERATOR
// Compiled into the generator too (its parsers read the properties by nameof), under its own namespace: the generator
// tests reference both assemblies.
namespace ModelDsl.Generators.Dsl
#else
namespace ModelDsl
#endif
{
    /// <summary>
    /// Declares a pruning pass that runs after training, in declaration order with the other
    /// <see cref="PruneAttribute">[Prune]</see> and <see cref="QuantizeAttribute">[Quantize]</see> passes.
    /// The amount is a fraction (<see cref="double"/>) or a count (<see cref="int"/>), as PyTorch's float/int.
    /// The compiler checks the targets, the amount against their weight counts, the dimension and the pass order (MD03xx).
    /// </summary>
    /// <example><c>[Prune(PruneMethod.L1Unstructured, 0.5, Targets = new[] { nameof(Hidden) }, FineTuneEpochs = 2)]</c></example>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
    public sealed class PruneAttribute : Attribute
    {
        /// <summary>Prunes a fraction in [0, 1] of each target's weights (of the survivors, on a second pass).</summary>
        public PruneAttribute(PruneMethod method, double amount) { Method = method; Amount = amount; }

        /// <summary>Prunes <paramref name="count"/> weights (or channels, for the structured methods) of each target.</summary>
        public PruneAttribute(PruneMethod method, int count) { Method = method; Amount = count; IsCount = true; }

        /// <summary>The pruning method.</summary>
        public PruneMethod Method { get; }
        /// <summary>The fraction, or the count when <see cref="IsCount"/>.</summary>
        public double Amount { get; }
        /// <summary>Whether <see cref="Amount"/> is a count.</summary>
        public bool IsCount { get; }
        /// <summary>The layers to prune (their <c>weight</c>), by name: <c>new[] { nameof(Hidden) }</c>. Required.</summary>
        public string[]? Targets { get; set; }
        /// <summary><see cref="PruneMethod.LnStructured"/>: the norm's order (1, 2, or <see cref="double.PositiveInfinity"/>). Default 2.</summary>
        public double N { get; set; } = PlanDefaults.N;
        /// <summary><see cref="PruneMethod.LnStructured"/> and <see cref="PruneMethod.RandomStructured"/>: the dimension of the channels. Default -1 (as PyTorch's class).</summary>
        public int Dim { get; set; } = PlanDefaults.Dim;
        /// <summary>Epochs of training after this pass (a fresh optimiser of the plan's kind at a tenth of the declared learning rate), so the model recovers. Default 0.</summary>
        public int FineTuneEpochs { get; set; }
    }

    /// <summary>
    /// Declares a quantisation pass that runs after training and after every <see cref="PruneAttribute">[Prune]</see>
    /// (MD0304): the Linear layers of the exported model are converted as <c>quantize_dynamic</c> does, or, with
    /// <see cref="QuantizeMode.StaticInt8"/>, its Conv2d and Linear layers as PyTorch's static quantisation does after
    /// calibrating on <see cref="CalibrationBatches"/> batches of the training data. A model declares one [Quantize]
    /// (a second is MD0312).
    /// </summary>
    /// <example><c>[Quantize(QuantizeMode.DynamicInt8)]</c>, <c>[Quantize(QuantizeMode.StaticInt8, CalibrationBatches = 32)]</c></example>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
    public sealed class QuantizeAttribute : Attribute
    {
        /// <summary>Declares the mode.</summary>
        public QuantizeAttribute(QuantizeMode mode) { Mode = mode; }

        /// <summary>The quantisation mode.</summary>
        public QuantizeMode Mode { get; }

        /// <summary>
        /// <see cref="QuantizeMode.StaticInt8"/>: training batches (of the declared batch size, the first of the seeded
        /// epoch-0 order) the observers see before the layers are converted. Default 32; at least 1 (MD0311).
        /// </summary>
        public int CalibrationBatches { get; set; } = PlanDefaults.CalibrationBatches;
    }
}
