using System;
using System.Globalization;
using Spectre.Console;

namespace ModelDsl.Runtime.Training
{
    /// <summary>Where the trainer reports progress: a live bar on a terminal, plain lines in logs.</summary>
    internal interface ITrainingProgress
    {
        void BeginEpoch(int epoch, int epochs, long steps);
        void Step(long stepInEpoch, double meanLoss, double accuracy, double samplesPerSecond, TimeSpan eta);
        void EndEpoch(EpochMetrics metrics, TimeSpan eta);
        void Note(string message);
    }

    internal static class TrainingProgress
    {
        /// <summary>
        /// Runs <paramref name="body"/> with a live Spectre.Console progress bar per epoch when stdout is a terminal,
        /// or with one plain line per epoch when output is redirected (CI logs) or <paramref name="plain"/> is set.
        /// </summary>
        public static T Run<T>(bool plain, Func<ITrainingProgress, T> body)
        {
            if (plain || Console.IsOutputRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
                return body(new PlainProgress());

            T result = default!;
            AnsiConsole.Progress()
                .AutoClear(false)
                .HideCompleted(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn { Width = 20 }, new PercentageColumn())
                .Start(ctx => result = body(new LiveProgress(ctx)));
            return result;
        }

        internal static string Format(double value) =>
            double.IsNaN(value) ? "-" : value.ToString("0.0000", CultureInfo.InvariantCulture);

        internal static string Percent(double value) =>
            double.IsNaN(value) ? "-" : (value * 100).ToString("0.00", CultureInfo.InvariantCulture) + "%";

        internal static string Duration(TimeSpan t) =>
            t.TotalHours >= 1 ? t.ToString(@"h\:mm\:ss", CultureInfo.InvariantCulture) : t.ToString(@"m\:ss", CultureInfo.InvariantCulture);

        internal static string Line(EpochMetrics m, int epochs, TimeSpan eta) =>
            $"epoch {m.Epoch}/{epochs}  loss {Format(m.TrainLoss)}  acc {Percent(m.TrainAccuracy)}" +
            (m.ValLoss is { } vl ? $"  val_loss {Format(vl)}" : "") +
            (m.ValAccuracy is { } va ? $"  val_acc {Percent(va)}" : "") +
            $"  lr {m.LearningRate.ToString("G4", CultureInfo.InvariantCulture)}" +
            $"  {(m.Samples / Math.Max(m.Seconds, 1e-9)).ToString("N0", CultureInfo.InvariantCulture)} samples/s" +
            $"  {m.Seconds.ToString("0.0", CultureInfo.InvariantCulture)}s  ETA {Duration(eta)}";
    }

    internal sealed class PlainProgress : ITrainingProgress
    {
        private int _epochs;

        public void BeginEpoch(int epoch, int epochs, long steps) => _epochs = epochs;
        public void Step(long stepInEpoch, double meanLoss, double accuracy, double samplesPerSecond, TimeSpan eta) { }
        public void EndEpoch(EpochMetrics metrics, TimeSpan eta) => Console.WriteLine(TrainingProgress.Line(metrics, _epochs, eta));
        public void Note(string message) => Console.WriteLine(message);
    }

    internal sealed class LiveProgress : ITrainingProgress
    {
        private readonly ProgressContext _context;
        private ProgressTask? _task;
        private int _epoch, _epochs;

        public LiveProgress(ProgressContext context) { _context = context; }

        public void BeginEpoch(int epoch, int epochs, long steps)
        {
            _epoch = epoch;
            _epochs = epochs;
            _task = _context.AddTask(Markup.Escape($"epoch {epoch}/{epochs}"), maxValue: Math.Max(1, steps));
        }

        public void Step(long stepInEpoch, double meanLoss, double accuracy, double samplesPerSecond, TimeSpan eta)
        {
            if (_task is null) return;
            _task.Value = stepInEpoch;
            // Short enough for an 80-column terminal next to the bar; the plain log line carries everything.
            _task.Description = Markup.Escape(
                $"epoch {_epoch}/{_epochs} loss {TrainingProgress.Format(meanLoss)} acc {TrainingProgress.Percent(accuracy)} " +
                $"{samplesPerSecond.ToString("N0", CultureInfo.InvariantCulture)}/s ETA {TrainingProgress.Duration(eta)}");
        }

        public void EndEpoch(EpochMetrics metrics, TimeSpan eta)
        {
            if (_task is null) return;
            _task.Value = _task.MaxValue;
            _task.Description = Markup.Escape(
                $"epoch {metrics.Epoch}/{_epochs} loss {TrainingProgress.Format(metrics.TrainLoss)} acc {TrainingProgress.Percent(metrics.TrainAccuracy)}" +
                (metrics.ValAccuracy is { } va ? $" val {TrainingProgress.Percent(va)}" : metrics.ValLoss is { } vl ? $" val_loss {TrainingProgress.Format(vl)}" : ""));
            _task.StopTask();
        }

        public void Note(string message) => AnsiConsole.MarkupLine(Markup.Escape(message));
    }
}
