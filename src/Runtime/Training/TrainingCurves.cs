using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using ScottPlot;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// Draws the learning curves of a run to a PNG with ScottPlot: loss per epoch (train and validation) on top,
    /// accuracy per epoch (train and validation) below when the run measured accuracy.
    /// </summary>
    public static class TrainingCurves
    {
        private const int Width = 900;
        private const int PanelHeight = 420;

        /// <summary>
        /// Writes the curves of <paramref name="history"/> to <paramref name="pngPath"/> (atomically; the directory is
        /// created if needed). Throws <see cref="InvalidOperationException"/> with a clear message when the plotting
        /// library's native part (SkiaSharp) cannot be loaded on this machine.
        /// </summary>
        public static void Save(string pngPath, IReadOnlyList<EpochMetrics> history)
        {
            ArgumentException.ThrowIfNullOrEmpty(pngPath);
            ArgumentNullException.ThrowIfNull(history);
            if (history.Count == 0)
                throw new ArgumentException("there are no epochs to plot", nameof(history));

            WritePng(pngPath, () => Render(history), "the training curves", "The training report and checkpoints are not affected.");
        }

        /// <summary>
        /// Draws a learning-rate range test (<c>lr-find</c>) to <paramref name="pngPath"/>: the loss of each mini-batch
        /// and the smoothed loss against the learning rate on a log axis, the suggested rate marked. Throws as
        /// <see cref="Save"/> does.
        /// </summary>
        public static void SaveLearningRateSweep(string pngPath, LearningRateSweep sweep)
        {
            ArgumentException.ThrowIfNullOrEmpty(pngPath);
            ArgumentNullException.ThrowIfNull(sweep);
            if (sweep.Points.Count == 0)
                throw new ArgumentException("there are no points to plot", nameof(sweep));
            WritePng(pngPath, () => RenderSweep(sweep), "the learning-rate sweep", "Its values are in the CSV file beside it.");
        }

        private static void WritePng(string pngPath, Func<byte[]> render, string what, string unaffected)
        {
            byte[] png;
            try
            {
                png = render();
            }
            catch (Exception e) when (IsNativeLoadFailure(e))
            {
                throw new InvalidOperationException(
                    $"Could not draw {what} to {pngPath}: the native SkiaSharp library (libSkiaSharp) that " +
                    $"ScottPlot draws with could not be loaded on this machine ({Innermost(e).Message}). " +
                    unaffected, e);
            }
            AtomicFile.Write(pngPath, stream => stream.Write(png));
        }

        private static byte[] RenderSweep(LearningRateSweep sweep)
        {
            var plot = new Plot();
            // ScottPlot has no log axis: the points sit at log10(lr), and the ticks are labelled with the rates.
            var points = sweep.Points.Where(p => p.LearningRate > 0).ToArray();
            double[] xs = points.Select(p => Math.Log10(p.LearningRate)).ToArray();
            AddSeries(plot, xs, points.Select(p => (double?)p.Loss), "loss");
            AddSeries(plot, xs, points.Select(p => (double?)p.Smoothed), "smoothed loss");
            if (sweep.Suggestion is { } suggested)
            {
                var line = plot.Add.VerticalLine(Math.Log10(suggested));
                line.LegendText = $"suggested {suggested.ToString("G3", System.Globalization.CultureInfo.InvariantCulture)}";
            }
            var ticks = new ScottPlot.TickGenerators.NumericAutomatic
            {
                LabelFormatter = x => Math.Pow(10, x).ToString("G2", System.Globalization.CultureInfo.InvariantCulture),
                MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
                IntegerTicksOnly = true,
            };
            plot.Axes.Bottom.TickGenerator = ticks;
            // The loss axis spans both curves up to a little above the divergence threshold (the raw losses of a
            // diverging sweep would squash everything else).
            var smoothed = points.Select(p => p.Smoothed).Where(IsFinite).ToArray();
            if (smoothed.Length > 0)
            {
                double low = Math.Min(smoothed.Min(), points.Select(p => p.Loss).Where(IsFinite).DefaultIfEmpty(double.PositiveInfinity).Min());
                double high = Math.Min(smoothed.Max(), DivergencePlotCeiling(sweep));
                double pad = Math.Max((high - low) * 0.1, 1e-6);
                plot.Axes.SetLimitsY(low - pad, high + pad);
            }
            plot.Title("Learning-rate range test");
            plot.XLabel("learning rate (log scale)");
            plot.YLabel("loss");
            plot.ShowLegend(Alignment.UpperLeft);
            using var image = plot.GetImage(Width, PanelHeight);
            return image.GetImageBytes(ImageFormat.Png);
        }

        private static double DivergencePlotCeiling(LearningRateSweep sweep) =>
            IsFinite(sweep.BestSmoothed) ? LearningRateFinder.DivergenceFactor * Math.Max(sweep.BestSmoothed, 1e-12) * 1.25 : double.PositiveInfinity;

        /// <summary>
        /// Like <see cref="Save"/>, but reports failure (for example a missing native library) through
        /// <paramref name="error"/> instead of throwing, for callers to whom the picture is optional.
        /// </summary>
        public static bool TrySave(string pngPath, IReadOnlyList<EpochMetrics> history, out string? error)
        {
            try
            {
                Save(pngPath, history);
                error = null;
                return true;
            }
            catch (Exception e) when (e is InvalidOperationException or ArgumentException or IOException or UnauthorizedAccessException)
            {
                error = e.Message;
                return false;
            }
        }

        private static byte[] Render(IReadOnlyList<EpochMetrics> history)
        {
            double[] epochs = history.Select(m => (double)m.Epoch).ToArray();
            bool hasAccuracy = history.Any(m => IsFinite(m.TrainAccuracy) || m.ValAccuracy is { } v && IsFinite(v));

            var multiplot = new Multiplot();
            multiplot.AddPlots(hasAccuracy ? 2 : 1);

            var loss = multiplot.GetPlot(0);
            AddSeries(loss, epochs, history.Select(m => (double?)m.TrainLoss), "train");
            AddSeries(loss, epochs, history.Select(m => m.ValLoss), "validation");
            Decorate(loss, "Loss", "loss", Alignment.UpperRight);

            if (hasAccuracy)
            {
                var accuracy = multiplot.GetPlot(1);
                AddSeries(accuracy, epochs, history.Select(m => (double?)m.TrainAccuracy), "train");
                AddSeries(accuracy, epochs, history.Select(m => m.ValAccuracy), "validation");
                Decorate(accuracy, "Accuracy", "accuracy", Alignment.LowerRight);
            }

            using var image = multiplot.Render(Width, PanelHeight * (hasAccuracy ? 2 : 1));
            return image.GetImageBytes(ImageFormat.Png);
        }

        private static void AddSeries(Plot plot, double[] epochs, IEnumerable<double?> values, string label)
        {
            var xs = new List<double>();
            var ys = new List<double>();
            int i = 0;
            foreach (var value in values)
            {
                if (value is { } y && IsFinite(y))
                {
                    xs.Add(epochs[i]);
                    ys.Add(y);
                }
                i++;
            }
            if (xs.Count == 0) return;
            var scatter = plot.Add.Scatter(xs.ToArray(), ys.ToArray());
            scatter.LegendText = label;
            scatter.MarkerSize = xs.Count <= 50 ? 5 : 0;
        }

        // Loss usually falls and accuracy rises: the legends go where the curves usually are not.
        private static void Decorate(Plot plot, string title, string yLabel, Alignment legend)
        {
            plot.Title(title);
            plot.XLabel("epoch");
            plot.YLabel(yLabel);
            plot.ShowLegend(legend);
        }

        private static bool IsFinite(double value) => !double.IsNaN(value) && !double.IsInfinity(value);

        private static bool IsNativeLoadFailure(Exception e)
        {
            for (var x = e; x is not null; x = x.InnerException)
                if (x is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException or TypeInitializationException)
                    return true;
            return false;
        }

        private static Exception Innermost(Exception e)
        {
            while (e.InnerException is not null) e = e.InnerException;
            return e;
        }
    }
}
