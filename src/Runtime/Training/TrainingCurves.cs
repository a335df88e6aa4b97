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

            byte[] png;
            try
            {
                png = Render(history);
            }
            catch (Exception e) when (IsNativeLoadFailure(e))
            {
                throw new InvalidOperationException(
                    $"Could not draw the training curves to {pngPath}: the native SkiaSharp library (libSkiaSharp) that " +
                    $"ScottPlot draws with could not be loaded on this machine ({Innermost(e).Message}). " +
                    "The training report and checkpoints are not affected.", e);
            }
            AtomicFile.Write(pngPath, stream => stream.Write(png));
        }

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
