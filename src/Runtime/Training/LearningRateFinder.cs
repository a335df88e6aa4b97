using System;
using System.Collections.Generic;
using System.Linq;
using static TorchSharp.torch;
using TensorDataset = ModelDsl.Runtime.Data.TensorDataset;

namespace ModelDsl.Runtime.Training
{
    /// <summary>One mini-batch of the sweep: the rate it trained at, its loss, and the smoothed loss after it.</summary>
    public readonly record struct LearningRatePoint(int Step, double LearningRate, double Loss, double Smoothed);

    /// <summary>What a learning-rate range test found.</summary>
    /// <param name="Points">One per mini-batch trained, in order.</param>
    /// <param name="SuggestionIndex">The index into <see cref="Points"/> of the suggested rate, or null when too few points remain.</param>
    /// <param name="DivergedAt">The index of the point where the smoothed loss passed the divergence threshold (the sweep stopped there), or null.</param>
    /// <param name="BestSmoothed">The lowest smoothed loss of the sweep.</param>
    public sealed record LearningRateSweep(IReadOnlyList<LearningRatePoint> Points, int? SuggestionIndex, int? DivergedAt, double BestSmoothed)
    {
        /// <summary>The suggested learning rate, or null.</summary>
        public double? Suggestion => SuggestionIndex is { } i ? Points[i].LearningRate : null;
    }

    /// <summary>
    /// The learning-rate range test (Smith 2017, "Cyclical Learning Rates", section 3.3) as PyTorch Lightning's
    /// <c>Tuner.lr_find</c> and fastai's <c>lr_find</c> run it: mini-batches of the training data at rates growing
    /// exponentially from a start to an end rate, an exponentially smoothed loss, a stop once that loss diverges, and
    /// a suggestion at the steepest descent of the smoothed loss.
    /// </summary>
    public static class LearningRateFinder
    {
        /// <summary>The smoothing factor of the loss (Lightning's and fastai's <c>beta</c>).</summary>
        public const double Beta = 0.98;
        /// <summary>The sweep stops when the smoothed loss exceeds this multiple of the best so far (Lightning's <c>early_stop_threshold</c>).</summary>
        public const double DivergenceFactor = 4.0;
        /// <summary>Points left out at the start of the suggestion (Lightning's <c>skip_begin</c>).</summary>
        public const int SkipBegin = 10;
        /// <summary>Points left out at the end of the suggestion (Lightning's <c>skip_end</c>).</summary>
        public const int SkipEnd = 1;

        /// <summary>
        /// The rate of the 0-based <paramref name="step"/> of <paramref name="steps"/>: start·(end/start)^(step/(steps−1)),
        /// so the first step trains at the start rate and the last at the end rate, each a constant factor above the one before.
        /// </summary>
        public static double LearningRateAt(int step, int steps, double start, double end) =>
            steps <= 1 ? start : start * Math.Pow(end / start, (double)step / (steps - 1));

        /// <summary>
        /// Runs the sweep on <paramref name="model"/> (trained in place: pass a fresh copy) with the plan's optimiser,
        /// loss, batch size, gradient clipping and seed, over shuffled mini-batches of <paramref name="train"/> (a new
        /// epoch's order when the steps outlast the data). Stops early when the smoothed loss diverges or a loss is not finite.
        /// </summary>
        public static LearningRateSweep Run(nn.Module<Tensor, Tensor> model, TensorDataset train, TrainingPlan plan,
            double startLr, double endLr, int steps, Device device)
        {
            ArgumentNullException.ThrowIfNull(model);
            ArgumentNullException.ThrowIfNull(train);
            if (train.Count == 0) throw new TrainingException($"{plan.Data}: no training rows to sweep over");
            var optimizer = Trainer.CreateOptimizer(plan with { LearningRate = startLr }, model);
            var step = new TrainingStep(model, optimizer, plan);
            var tracker = new Tracker();
            var points = new List<LearningRatePoint>(steps);
            model.train();
            int? divergedAt = null;
            for (int epoch = 0; points.Count < steps && divergedAt is null; epoch++)
            {
                foreach (var (xb, yb) in train.Batches(plan.BatchSize, shuffle: true, plan.Seed, epoch))
                {
                    double lr = LearningRateAt(points.Count, steps, startLr, endLr);
                    foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
                    double loss;
                    using (var scope = NewDisposeScope())
                    {
                        // The batch was assembled before this scope opened: it goes with the step (as in Trainer).
                        scope.Attach(xb);
                        scope.Attach(yb);
                        var x = xb.to(device);
                        var y = yb.to(device);
                        try
                        {
                            loss = step.Run(x, y).Loss;
                        }
                        catch (Exception e) when (StepFailure.IsNative(e))
                        {
                            throw StepFailure.Explain(e, model, x, plan.Loss, $"lr-find step {points.Count + 1}");
                        }
                    }
                    bool stop = tracker.Add(loss, out double smoothed);
                    points.Add(new LearningRatePoint(points.Count + 1, lr, loss, smoothed));
                    if (stop) divergedAt = points.Count - 1;
                    if (stop || points.Count == steps) break;
                }
            }
            return new LearningRateSweep(points, Suggest(points.Select(p => p.Smoothed).ToArray()), divergedAt, tracker.Best);
        }

        /// <summary>
        /// The smoothed losses of a sequence and the index at which the sweep stops (null if it runs through):
        /// <see cref="Tracker"/> over every loss, as <see cref="Run"/> applies it.
        /// </summary>
        public static (double[] Smoothed, int? StopAt) Smooth(IReadOnlyList<double> losses)
        {
            var tracker = new Tracker();
            var smoothed = new List<double>();
            foreach (double loss in losses)
            {
                bool stop = tracker.Add(loss, out double s);
                smoothed.Add(s);
                if (stop) return (smoothed.ToArray(), smoothed.Count - 1);
            }
            return (smoothed.ToArray(), null);
        }

        /// <summary>
        /// Lightning's suggestion: leave out the first <see cref="SkipBegin"/> and the last <see cref="SkipEnd"/> points
        /// and the non-finite ones, take the gradient of the smoothed loss over the remaining points with unit spacing
        /// (<c>torch.gradient</c>: central differences inside, one-sided at the ends — per step of the sweep, that is
        /// per equal step of log lr) and return the index of its minimum, the steepest descent. Null below two points.
        /// </summary>
        public static int? Suggest(IReadOnlyList<double> smoothed)
        {
            var kept = Enumerable.Range(0, smoothed.Count).Skip(SkipBegin).SkipLast(SkipEnd).Where(i => double.IsFinite(smoothed[i])).ToArray();
            if (kept.Length < 2) return null;
            int best = 0;
            double steepest = double.PositiveInfinity;
            for (int k = 0; k < kept.Length; k++)
            {
                double gradient = k == 0 ? smoothed[kept[1]] - smoothed[kept[0]]
                    : k == kept.Length - 1 ? smoothed[kept[k]] - smoothed[kept[k - 1]]
                    : (smoothed[kept[k + 1]] - smoothed[kept[k - 1]]) / 2;
                if (gradient < steepest)
                {
                    steepest = gradient;
                    best = k;
                }
            }
            return kept[best];
        }

        /// <summary>
        /// The smoothed loss and the divergence check after each mini-batch. The moving average
        /// a ← β·a + (1−β)·loss is divided by 1 − β^n for the n-th batch (fastai's bias correction; Lightning counts n
        /// from 2, which halves its first values). From the second batch on, a smoothed loss above
        /// <see cref="DivergenceFactor"/> × the best so far — or a loss that is not finite — stops the sweep.
        /// </summary>
        private sealed class Tracker
        {
            private double _average;
            private int _n;

            public double Best { get; private set; } = double.PositiveInfinity;

            public bool Add(double loss, out double smoothed)
            {
                _n++;
                _average = Beta * _average + (1 - Beta) * loss;
                smoothed = _average / (1 - Math.Pow(Beta, _n));
                // Measured from the best by its magnitude, so a [Loss] method that goes negative does not stop the sweep at once.
                bool stop = !double.IsFinite(loss) || _n > 1 && smoothed - Best > (DivergenceFactor - 1) * Math.Abs(Best);
                if (smoothed < Best || _n == 1) Best = smoothed;
                return stop;
            }
        }
    }
}
