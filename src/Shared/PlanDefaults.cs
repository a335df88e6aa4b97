namespace ModelDsl
{
    /// <summary>
    /// The one place of the training plan's defaults that are not zero, false or the first enum member. The DSL's
    /// attributes initialise their properties from it, the runtime's <c>TrainingPlan</c> too (generated plans write
    /// only what a model declares), and the compiler reads it for the checks that need a value the user left out.
    /// Linked into the DSL, the generator and the runtime.
    /// </summary>
    internal static class PlanDefaults
    {
        // [Train]
        /// <summary>Learning rate.</summary>
        public const double LearningRate = 1e-3;
        /// <summary>Weight decay: NaN means the optimiser's PyTorch default (AdamW 0.01, the others 0).</summary>
        public const double WeightDecay = double.NaN;
        /// <summary>Passes over the training data.</summary>
        public const int Epochs = 10;
        /// <summary>Samples per batch per rank.</summary>
        public const int BatchSize = 64;
        /// <summary>Epochs between decays of the step schedule.</summary>
        public const int StepSize = 10;
        /// <summary>Decay factor of the step schedule.</summary>
        public const double Gamma = 0.1;
        /// <summary>Multiplier of every feature value.</summary>
        public const double FeatureScale = 1.0;
        /// <summary>Fraction of the training data held out for validation.</summary>
        public const double ValidationFraction = 0.1;
        /// <summary>Micro-batches per optimiser step (1: no gradient accumulation).</summary>
        public const int GradientAccumulation = 1;

        // [Parallel]
        /// <summary>Ranks of a model with [Parallel] (a plan without it trains on one).</summary>
        public const int WorldSize = 2;
        /// <summary>Gradient bucket size in MiB.</summary>
        public const double BucketSizeMB = 25;
        /// <summary>Async: local steps between averaging rounds.</summary>
        public const int SyncEvery = 1;
        /// <summary>Async with the Nesterov outer optimiser: outer learning rate (DiLoCo).</summary>
        public const double OuterLearningRate = 0.7;
        /// <summary>Async with the Nesterov outer optimiser: outer momentum (DiLoCo).</summary>
        public const double OuterMomentum = 0.9;
        /// <summary>Async: overlap each averaging round's all-reduce with the next local steps.</summary>
        public const bool Overlap = true;

        // [Prune]
        /// <summary>LnStructured: the norm's order.</summary>
        public const double N = 2;
        /// <summary>The structured methods' channel dimension (as PyTorch's class).</summary>
        public const int Dim = -1;

        // [Quantize]
        /// <summary>StaticInt8: training batches the observers see before conversion.</summary>
        public const int CalibrationBatches = 32;
    }
}
