using System.Globalization;

namespace ModelDsl.Plans
{
    /// <summary>
    /// The range a numeric plan setting must lie in, written once: the compiler checks the declared value with it
    /// (its MDxxxx diagnostic keeps its own id, span and wording), the command line checks an override with it
    /// (<see cref="Message"/> names the <c>--option</c>), and the runtime checks what it is handed.
    /// </summary>
    internal sealed class RangeRule
    {
        private readonly Func<double, bool> _holds;

        public RangeRule(string setting, string requirement, Func<double, bool> holds)
        {
            Setting = setting;
            Requirement = requirement;
            _holds = holds;
        }

        /// <summary>The setting's [Train]/[Parallel] property name (and <c>TrainingPlan</c>'s).</summary>
        public string Setting { get; }

        /// <summary>What the value must be, as a phrase after "must be": "at least 1", "in [0, 1)".</summary>
        public string Requirement { get; }

        /// <summary>Whether <paramref name="value"/> is in range (NaN never is).</summary>
        public bool Holds(double value) => _holds(value);

        /// <summary>"<paramref name="name"/> must be …, got <paramref name="value"/>".</summary>
        public string Message(string name, IFormattable value) =>
            $"{name} must be {Requirement}, got {value.ToString(null, CultureInfo.InvariantCulture)}";
    }

    /// <summary>The range rules of the plan settings (<c>[Train]</c>, <c>[Parallel]</c> and their command-line overrides).</summary>
    internal static class PlanRules
    {
        private static bool Positive(double v) => v > 0 && !double.IsInfinity(v);
        private static bool NonNegative(double v) => v >= 0 && !double.IsInfinity(v);

        public static readonly RangeRule Epochs = new("Epochs", "at least 1", v => v >= 1);
        public static readonly RangeRule BatchSize = new("BatchSize", "at least 1", v => v >= 1);
        public static readonly RangeRule LearningRate = new("LearningRate", "a positive number", Positive);
        public static readonly RangeRule WeightDecay = new("WeightDecay", "0 or more", NonNegative);
        public static readonly RangeRule Momentum = new("Momentum", "in [0, 1)", v => v >= 0 && v < 1);
        public static readonly RangeRule StepSize = new("StepSize", "at least 1", v => v >= 1);
        public static readonly RangeRule Gamma = new("Gamma", "in (0, 1]", v => v > 0 && v <= 1);
        public static readonly RangeRule GradientClipNorm = new("GradientClipNorm", "0 (off) or a positive norm", NonNegative);
        public static readonly RangeRule ValidationFraction = new("ValidationFraction", "in [0, 1)", v => v >= 0 && v < 1);
        public static readonly RangeRule EarlyStoppingPatience = new("EarlyStoppingPatience", "0 (off) or a number of epochs", v => v >= 0);
        public static readonly RangeRule FeatureScale = new("FeatureScale", "a positive number", Positive);
        public static readonly RangeRule MemoryBudgetMB = new("MemoryBudgetMB", "0 (no budget) or a positive number of MiB", v => v >= 0 && !double.IsInfinity(v));
        public static readonly RangeRule GradientAccumulation = new("GradientAccumulation", "at least 1 (micro-batches per optimiser step)", v => v >= 1);

        public static readonly RangeRule WorldSize = new("WorldSize", "at least 1", v => v >= 1);
        public static readonly RangeRule BucketSizeMB = new("BucketSizeMB", "a positive number", Positive);
        public static readonly RangeRule SyncEvery = new("SyncEvery", "at least 1 (local steps between averaging rounds)", v => v >= 1);
        public static readonly RangeRule WarmupSteps = new("WarmupSteps", "0 or more", v => v >= 0);
        public static readonly RangeRule OuterLearningRate = new("OuterLearningRate", "a positive number", Positive);
        public static readonly RangeRule OuterMomentum = new("OuterMomentum", "in [0, 1)", v => v >= 0 && v < 1);
        public static readonly RangeRule MaxRestarts = new("MaxRestarts", "0 or more", v => v >= 0);
    }
}
