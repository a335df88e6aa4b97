using System.Globalization;
using ModelDsl.Runtime.Pruning;

namespace ModelDsl.Runtime.Optimization
{
    /// <summary>One pass of a model's optimisation plan, declared by <c>[Prune]</c> or <c>[Quantize]</c> and checked by the compiler.</summary>
    public abstract record OptimizationPass;

    /// <summary>
    /// A pruning pass: <paramref name="Method"/> on each target's <c>weight</c>, by a fraction or a count
    /// (<paramref name="Amount"/>), then <paramref name="FineTuneEpochs"/> epochs of training.
    /// </summary>
    public sealed record PrunePass(PruneMethod Method, PruneAmount Amount, IReadOnlyList<string> Targets,
        double N = 2, int Dim = -1, int FineTuneEpochs = 0) : OptimizationPass
    {
        /// <inheritdoc/>
        public override string ToString() =>
            $"Prune {Method} {(Amount.IsCount ? Amount.Count.ToString(CultureInfo.InvariantCulture) : Amount.Fraction.ToString("0.###", CultureInfo.InvariantCulture))} of {string.Join(", ", Targets)}" +
            (FineTuneEpochs > 0 ? $", then {FineTuneEpochs} fine-tune epoch{(FineTuneEpochs == 1 ? "" : "s")}" : "");
    }

    /// <summary>
    /// A quantisation pass: over the model's Linear (and LSTM/GRU) layers, or, for <see cref="QuantizeMode.StaticInt8"/>,
    /// its Conv2d and Linear layers after calibrating on <paramref name="CalibrationBatches"/> training batches.
    /// </summary>
    public sealed record QuantizePass(QuantizeMode Mode, int CalibrationBatches = PlanDefaults.CalibrationBatches) : OptimizationPass
    {
        /// <inheritdoc/>
        public override string ToString() =>
            Mode == QuantizeMode.StaticInt8 ? $"Quantize {Mode}, {CalibrationBatches} calibration batch{(CalibrationBatches == 1 ? "" : "es")}" : $"Quantize {Mode}";
    }
}
