using System;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// A model's declared training plan: the values of its <see cref="TrainAttribute">[Train]</see>, checked by the
    /// compiler, plus the facts about the model the trainer needs. Generated code creates it; the command line
    /// can override some values for one run.
    /// </summary>
    public sealed record TrainingPlan
    {
        /// <summary>The model class name.</summary>
        public required string ModelName { get; init; }
        /// <summary>Per-sample input dims (the model's input without the batch dim).</summary>
        public required long[] SampleShape { get; init; }
        /// <summary>Whether the model takes integer ids.</summary>
        public bool InputIsInteger { get; init; }
        /// <summary>The loss function.</summary>
        public Loss Loss { get; init; }
        /// <summary>The optimiser.</summary>
        public Optimizer Optimizer { get; init; }
        /// <summary>Learning rate.</summary>
        public double LearningRate { get; init; } = 1e-3;
        /// <summary>Weight decay; NaN means the optimiser's PyTorch default (AdamW 0.01, others 0).</summary>
        public double WeightDecay { get; init; } = double.NaN;
        /// <summary>SGD momentum.</summary>
        public double Momentum { get; init; }
        /// <summary>SGD Nesterov momentum.</summary>
        public bool Nesterov { get; init; }
        /// <summary>Passes over the training data.</summary>
        public int Epochs { get; init; } = 10;
        /// <summary>Samples per batch (per rank).</summary>
        public int BatchSize { get; init; } = 64;
        /// <summary>The seed for initialisation, shuffling (seed + epoch) and dropout.</summary>
        public long Seed { get; init; }
        /// <summary>The learning-rate schedule.</summary>
        public Schedule Schedule { get; init; }
        /// <summary>Warm-up epochs of the cosine schedule.</summary>
        public int WarmupEpochs { get; init; }
        /// <summary>Epochs between decays of the step schedule.</summary>
        public int StepSize { get; init; } = 10;
        /// <summary>Decay factor of the step schedule.</summary>
        public double Gamma { get; init; } = 0.1;
        /// <summary>Gradient-norm clipping threshold; 0 is off.</summary>
        public double GradientClipNorm { get; init; }
        /// <summary>Training data file.</summary>
        public string Data { get; init; } = "";
        /// <summary>Optional test data file.</summary>
        public string TestData { get; init; } = "";
        /// <summary>Fraction of the training data held out for validation.</summary>
        public double ValidationFraction { get; init; } = 0.1;

        /// <summary>Classes the model outputs (dimension 1 of its output) for classification losses; 0 if unknown.</summary>
        public int Classes { get; init; }

        /// <summary>Multiplier applied to every feature value at load time.</summary>
        public double FeatureScale { get; init; } = 1.0;

        /// <summary>Whether targets are class indices (cross-entropy, NLL) and accuracy is meaningful.</summary>
        public bool IsClassification => Loss is Loss.CrossEntropy or Loss.NLL;

        /// <summary>The weight decay actually used.</summary>
        public double EffectiveWeightDecay => double.IsNaN(WeightDecay) ? (Optimizer == Optimizer.AdamW ? 0.01 : 0.0) : WeightDecay;

        /// <summary>
        /// What a checkpoint must agree with to be resumed: every value that changes the trajectory of training
        /// (not the epoch count, which a resumed run may extend, nor file paths).
        /// </summary>
        public string Fingerprint()
        {
            var o = new JsonObject
            {
                ["model"] = ModelName,
                ["sample_shape"] = string.Join("x", SampleShape),
                ["loss"] = Loss.ToString(),
                ["optimizer"] = Optimizer.ToString(),
                ["lr"] = LearningRate.ToString("R", CultureInfo.InvariantCulture),
                ["weight_decay"] = EffectiveWeightDecay.ToString("R", CultureInfo.InvariantCulture),
                ["momentum"] = Momentum.ToString("R", CultureInfo.InvariantCulture),
                ["nesterov"] = Nesterov,
                ["batch_size"] = BatchSize,
                ["seed"] = Seed,
                ["schedule"] = Schedule.ToString(),
                ["warmup_epochs"] = WarmupEpochs,
                ["step_size"] = StepSize,
                ["gamma"] = Gamma.ToString("R", CultureInfo.InvariantCulture),
                ["clip"] = GradientClipNorm.ToString("R", CultureInfo.InvariantCulture),
                ["validation_fraction"] = ValidationFraction.ToString("R", CultureInfo.InvariantCulture),
                ["feature_scale"] = FeatureScale.ToString("R", CultureInfo.InvariantCulture),
            };
            // The cosine schedule is a function of the total epoch count; the other schedules let a run be extended.
            if (Schedule == Schedule.Cosine) o["epochs"] = Epochs;
            return o.ToJsonString(new JsonSerializerOptions { WriteIndented = false });
        }

        /// <summary>
        /// The learning rate for a 0-based epoch. Step: lr·γ^⌊e/step⌋ (PyTorch's StepLR). Cosine: linear warm-up
        /// lr·(e+1)/W for e &lt; W, then lr·½(1 + cos(π(e−W)/(E−W))) (cosine annealing to zero without restarts).
        /// </summary>
        public double LearningRateAt(int epoch)
        {
            switch (Schedule)
            {
                case Schedule.Step:
                    return LearningRate * Math.Pow(Gamma, epoch / Math.Max(1, StepSize));
                case Schedule.Cosine:
                    if (epoch < WarmupEpochs) return LearningRate * (epoch + 1) / WarmupEpochs;
                    int span = Math.Max(1, Epochs - WarmupEpochs);
                    return LearningRate * 0.5 * (1 + Math.Cos(Math.PI * (epoch - WarmupEpochs) / span));
                default:
                    return LearningRate;
            }
        }
    }
}
