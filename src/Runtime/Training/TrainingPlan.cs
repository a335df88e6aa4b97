using System;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// A model's declared training plan: the values of its <see cref="TrainAttribute">[Train]</see>, checked by the
    /// compiler, plus the facts about the model the trainer needs. Generated code creates it, setting only the values
    /// the model declares: the defaults are these initialisers (read from the shared <c>PlanDefaults</c>, as the
    /// attributes' are). The command line can override some values for one run.
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
        public double LearningRate { get; init; } = PlanDefaults.LearningRate;
        /// <summary>Weight decay; NaN means the optimiser's PyTorch default (AdamW 0.01, others 0). The fingerprint holds the effective value.</summary>
        public double WeightDecay { get; init; } = PlanDefaults.WeightDecay;
        /// <summary>SGD momentum.</summary>
        public double Momentum { get; init; }
        /// <summary>SGD Nesterov momentum.</summary>
        public bool Nesterov { get; init; }
        /// <summary>Passes over the training data.</summary>
        [NotInFingerprint("a resumed run may train more epochs (the cosine schedule adds it back)")]
        public int Epochs { get; init; } = PlanDefaults.Epochs;
        /// <summary>Samples per batch (per rank).</summary>
        public int BatchSize { get; init; } = PlanDefaults.BatchSize;
        /// <summary>The seed for initialisation, shuffling (seed + epoch) and dropout.</summary>
        public long Seed { get; init; }
        /// <summary>The learning-rate schedule.</summary>
        public Schedule Schedule { get; init; }
        /// <summary>Warm-up epochs of the cosine schedule.</summary>
        public double WarmupEpochs { get; init; }
        /// <summary>Epochs between decays of the step schedule.</summary>
        public int StepSize { get; init; } = PlanDefaults.StepSize;
        /// <summary>Decay factor of the step schedule.</summary>
        public double Gamma { get; init; } = PlanDefaults.Gamma;
        /// <summary>Gradient-norm clipping threshold; 0 is off.</summary>
        public double GradientClipNorm { get; init; }
        /// <summary>Training data file.</summary>
        [NotInFingerprint("a path; the same data may live elsewhere")]
        public string Data { get; init; } = "";
        /// <summary>Optional test data file.</summary>
        [NotInFingerprint("test data never changes training")]
        public string TestData { get; init; } = "";
        /// <summary>The CSV files' first row: true a header row, false data, null detected (a row without numbers before a row of numbers).</summary>
        [NotInFingerprint("how the files are read, like their paths")]
        public bool? Header { get; init; }
        /// <summary>The label column's name in the header row; empty: the last column.</summary>
        [NotInFingerprint("how the files are read, like their paths")]
        public string LabelColumn { get; init; } = "";
        /// <summary>Fraction of the training data held out for validation.</summary>
        public double ValidationFraction { get; init; } = PlanDefaults.ValidationFraction;

        /// <summary>Epochs without a better validation loss after which training stops; 0 is off.</summary>
        [NotInFingerprint("it decides when training ends, not what an epoch does")]
        public int EarlyStoppingPatience { get; init; }

        /// <summary>When the learning-rate schedule advances: each epoch, or each optimiser step.</summary>
        public ScheduleInterval ScheduleInterval { get; init; }

        /// <summary>
        /// A language model: token ids (B, T) in, next-token scores (B, T, V) out. It trains on a UTF-8 text file whose
        /// characters are the vocabulary, in windows of T = <see cref="SampleShape"/>[0] characters with a target per
        /// position; the last <see cref="ValidationFraction"/> of the text is the validation set.
        /// </summary>
        public bool IsLanguageModel { get; init; }

        /// <summary>Classes the model outputs (dimension 1 of its output) for classification losses; 0 if unknown.</summary>
        public int Classes { get; init; }

        /// <summary>Multiplier applied to every feature value at load time.</summary>
        public double FeatureScale { get; init; } = PlanDefaults.FeatureScale;

        /// <summary>How ranks combine their work ([Parallel]); irrelevant at world size 1.</summary>
        public ParallelMode Mode { get; init; }
        /// <summary>Ranks training together; each takes <see cref="BatchSize"/> samples per step.</summary>
        public int WorldSize { get; init; } = 1;
        /// <summary>The collective library.</summary>
        [NotInFingerprint("the backend moves the same numbers")]
        public CommBackend Backend { get; init; }
        /// <summary>Gradient bucket size in MiB (the first bucket is 1 MiB).</summary>
        [NotInFingerprint("bucketing changes when gradients travel, not their values")]
        public double BucketSizeMB { get; init; } = PlanDefaults.BucketSizeMB;
        /// <summary>Average BatchNorm batch statistics over all ranks.</summary>
        public bool SyncBatchNorm { get; init; }
        /// <summary>Async: local steps between averaging rounds.</summary>
        public int SyncEvery { get; init; } = PlanDefaults.SyncEvery;
        /// <summary>Async: synchronous steps before local SGD starts.</summary>
        public int WarmupSteps { get; init; }
        /// <summary>Async: the outer optimiser.</summary>
        public OuterOptimizer OuterOptimizer { get; init; }
        /// <summary>Async with Nesterov: outer learning rate.</summary>
        public double OuterLearningRate { get; init; } = PlanDefaults.OuterLearningRate;
        /// <summary>Async with Nesterov: outer momentum.</summary>
        public double OuterMomentum { get; init; } = PlanDefaults.OuterMomentum;
        /// <summary>
        /// Async: start each averaging round's all-reduce without waiting and apply it at the next round, so it overlaps
        /// the local steps between (default); false averages with a blocking all-reduce. <c>--no-overlap</c>.
        /// </summary>
        public bool OverlapAveraging { get; init; } = PlanDefaults.Overlap;

        /// <summary>The optimisation passes ([Prune], [Quantize]) in declaration order; they run after training.</summary>
        [NotInFingerprint("the passes run after training; its checkpoint does not depend on them")]
        public IReadOnlyList<ModelDsl.Runtime.Optimization.OptimizationPass> Passes { get; init; } = Array.Empty<ModelDsl.Runtime.Optimization.OptimizationPass>();
        /// <summary>The parameter count after the passes, computed by the compiler (structured pruning removes parameters).</summary>
        [NotInFingerprint("derived from the passes")]
        public long ParametersAfterPasses { get; init; }

        /// <summary>
        /// The model's <see cref="LossAttribute">[Loss]</see> method, by name ("" when it has none): it computes the loss
        /// in place of <see cref="Loss"/>'s formula, while <see cref="Loss"/> still says what the targets are and which
        /// metrics apply. In the fingerprint only when set (a checkpoint of a plan without one still resumes).
        /// </summary>
        [NotInFingerprint("added to the fingerprint by Fingerprint() when set")]
        public string LossMethod { get; init; } = "";

        /// <summary>The <see cref="LossMethod"/> itself: (output, target) → the batch's mean loss; null when the model has none.</summary>
        [NotInFingerprint("LossMethod names it")]
        public Func<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>? CustomLoss { get; init; }

        /// <summary>
        /// Restarts of a failed multi-rank job from its last checkpoint (<c>--max-restarts</c>, torchrun's
        /// <c>--max-restarts</c>); 0 leaves a failed job failed.
        /// </summary>
        [NotInFingerprint("it decides whether a failed job starts again, not what an epoch does")]
        public int MaxRestarts { get; init; }

        /// <summary>
        /// Sync: what the ranks shard instead of replicating (ZeRO stages; <c>--shard</c>); the steps are DDP's, and
        /// the partition depends on the world size only, so a checkpoint (whole or sharded) resumes at any level.
        /// </summary>
        [NotInFingerprint("sharding changes where the state lives, not the steps; every level partitions the same way")]
        public ShardLevel Shard { get; init; }

        /// <summary>
        /// Micro-batches of <see cref="BatchSize"/> per optimiser step (<c>--grad-accum</c>); 1 is none. In the
        /// fingerprint: it changes the steps (k times fewer, each over k times the samples), as the world size does.
        /// </summary>
        public int GradientAccumulation { get; init; } = PlanDefaults.GradientAccumulation;

        /// <summary>
        /// The compiler's memory facts of the model (its parameter tensors, activation bytes per sample), from which the
        /// per-rank memory plan is computed at the run's settings (<see cref="MemoryPlan"/>); null when the compiler could not
        /// know them (a shape known only at run time).
        /// </summary>
        [NotInFingerprint("derived from the model's declaration")]
        public MemoryModel? Memory { get; init; }

        /// <summary>The declared per-rank memory budget in MiB (checked at compile time, MD0430); 0 when none.</summary>
        [NotInFingerprint("a check of the plan, not a setting of training")]
        public double MemoryBudgetMB { get; init; }

        /// <summary>
        /// The arithmetic of the training steps (<c>--precision</c>): float32, or bfloat16 matrix products on working
        /// copies of float32 master weights (<see cref="MixedPrecision.BFloat16Training"/>). Validation, evaluation and
        /// checkpoints are float32 either way.
        /// </summary>
        [NotInFingerprint("checkpoints hold the float32 master weights either way: a run may resume in the other precision")]
        public Precision Precision { get; init; }

        /// <summary>
        /// Activation recomputation (<c>--recompute</c>): each block keeps only its input and runs its forward again in
        /// backward (<see cref="BlockRecompute"/>). The gradients are the plain run's.
        /// </summary>
        [NotInFingerprint("the gradients are the plain run's: a run may resume with recomputation on or off")]
        public Recompute Recompute { get; init; }

        /// <summary>The loss as the progress and the reports name it: the [Loss] method, or the declared loss.</summary>
        public string LossName => CustomLoss is null || LossMethod.Length == 0 ? Loss.ToString() : $"{LossMethod} ([Loss] method)";

        /// <summary>Whether targets are class indices (cross-entropy, NLL) and accuracy is meaningful.</summary>
        public bool IsClassification => Loss is Loss.CrossEntropy or Loss.NLL;

        /// <summary>The weight decay actually used.</summary>
        public double EffectiveWeightDecay => double.IsNaN(WeightDecay) ? (Optimizer == Optimizer.AdamW ? 0.01 : 0.0) : WeightDecay;

        /// <summary>
        /// What a checkpoint must agree with to be resumed: every value that changes the trajectory of training.
        /// It is derived from the plan's properties by reflection, so a new setting is in it unless its property
        /// says why not with <see cref="NotInFingerprintAttribute"/> (file paths; the epoch count, which a resumed
        /// run may extend — except under the cosine schedule, which is a function of it).
        /// </summary>
        public string Fingerprint()
        {
            var o = new JsonObject();
            foreach (var property in FingerprintProperties)
            {
                object? value = property.Name == nameof(WeightDecay) ? EffectiveWeightDecay : property.GetValue(this);
                o[property.Name] = Format(value);
            }
            if (Schedule == Schedule.Cosine) o[nameof(Epochs)] = Epochs;
            if (LossMethod.Length > 0) o[nameof(LossMethod)] = LossMethod;
            return o.ToJsonString(new JsonSerializerOptions { WriteIndented = false });
        }

        /// <summary>The settable properties that the fingerprint holds, in name order.</summary>
        internal static IReadOnlyList<PropertyInfo> FingerprintProperties { get; } = typeof(TrainingPlan)
            .GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.SetMethod is not null && p.GetCustomAttribute<NotInFingerprintAttribute>() is null)
            .OrderBy(p => p.Name, StringComparer.Ordinal)
            .ToArray();

        private static string Format(object? value) => value switch
        {
            null => "",
            double d => d.ToString("R", CultureInfo.InvariantCulture),
            long[] dims => string.Join("x", dims),
            IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
            _ => value.ToString() ?? "",
        };

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
                    if (epoch < WarmupEpochs) return LearningRate * Math.Min(1, (epoch + 1) / WarmupEpochs);
                    double span = Math.Max(1, Epochs - WarmupEpochs);
                    return LearningRate * 0.5 * (1 + Math.Cos(Math.PI * (epoch - WarmupEpochs) / span));
                default:
                    return LearningRate;
            }
        }

        /// <summary>
        /// The learning rate after <paramref name="epochs"/> epochs of training, a fraction included
        /// (<see cref="ScheduleInterval.Step"/>): the same curve, sampled per step. Step: lr·γ^⌊e/step⌋. Cosine: warm-up
        /// lr·e/W for e &lt; W (rising from the first step), then lr·½(1 + cos(π(e−W)/(E−W))).
        /// </summary>
        public double LearningRateAt(double epochs)
        {
            switch (Schedule)
            {
                case Schedule.Step:
                    return LearningRate * Math.Pow(Gamma, Math.Floor(epochs / Math.Max(1, StepSize)));
                case Schedule.Cosine:
                    if (epochs < WarmupEpochs) return LearningRate * epochs / WarmupEpochs;
                    double span = Math.Max(1, Epochs - WarmupEpochs);
                    return LearningRate * 0.5 * (1 + Math.Cos(Math.PI * Math.Min(1, (epochs - WarmupEpochs) / span)));
                default:
                    return LearningRate;
            }
        }
    }

    /// <summary>Marks a <see cref="TrainingPlan"/> property that a checkpoint need not agree with, and says why.</summary>
    [AttributeUsage(AttributeTargets.Property)]
    public sealed class NotInFingerprintAttribute : Attribute
    {
        /// <summary>Excludes the property; <paramref name="reason"/> documents why resuming may change it.</summary>
        public NotInFingerprintAttribute(string reason) => Reason = reason;

        /// <summary>Why the property is left out.</summary>
        public string Reason { get; }
    }
}
