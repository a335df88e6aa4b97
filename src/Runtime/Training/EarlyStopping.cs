using System.Collections.Generic;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// The verdict on the monitored metric, the validation loss, after an epoch: which epoch is best so far, whether
    /// the latest one is it (then <c>best.ckpt</c> is written), and whether patience has run out. It is a function of
    /// the epoch history alone, so a resumed run continues the count where the interrupted one was. An epoch
    /// improves only on a strictly lower, finite loss (Keras' and Lightning's <c>min_delta = 0</c>).
    /// </summary>
    internal readonly record struct EarlyStopping(int? BestEpoch, double? BestValLoss, bool Improved, bool Stop)
    {
        /// <summary>The verdict after the last epoch of <paramref name="history"/>; <paramref name="patience"/> 0 never stops.</summary>
        public static EarlyStopping After(IReadOnlyList<EpochMetrics> history, int patience)
        {
            int? bestEpoch = null;
            double best = double.PositiveInfinity;
            foreach (var m in history)
            {
                if (m.ValLoss is { } loss && double.IsFinite(loss) && loss < best)
                {
                    best = loss;
                    bestEpoch = m.Epoch;
                }
            }
            if (bestEpoch is null || history.Count == 0) return new EarlyStopping(null, null, false, false);
            int last = history[history.Count - 1].Epoch;
            return new EarlyStopping(bestEpoch, best, bestEpoch == last, patience > 0 && last - bestEpoch.Value >= patience);
        }
    }
}
