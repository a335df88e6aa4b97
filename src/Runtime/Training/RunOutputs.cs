using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// Everything a run writes or prints — progress, notes, checkpoints, TensorBoard events, the report and its
    /// curves — in one place, done by rank 0 only. On other ranks every member is a no-op, so the loop calls them
    /// unconditionally.
    /// </summary>
    internal sealed class RunOutputs
    {
        private readonly TrainingOptions _options;
        private readonly ITrainingProgress _progress;
        private readonly bool _primary;
        private SummaryWriter? _tensorboard;
        // A sharding strategy: every rank writes its shard of each checkpoint (ShardedCheckpoint), not rank 0 the whole.
        private readonly ITrainingStrategy? _shards;
        private readonly ShardLevel _level;

        public RunOutputs(TrainingOptions options, ITrainingProgress progress, bool primary, ITrainingStrategy? strategy = null)
        {
            _options = options;
            _progress = progress;
            _primary = primary;
            if (strategy is IShardedCheckpoints sharded && strategy.WorldSize > 1) (_shards, _level) = (strategy, sharded.Level);
            CheckpointPath = Path.Combine(options.CheckpointDirectory, Checkpoint.FileName);
        }

        /// <summary>Where the checkpoint of each epoch goes (and a resume reads from).</summary>
        public string CheckpointPath { get; }

        /// <summary>Where the checkpoint of the best epoch (lowest validation loss) goes.</summary>
        public string BestCheckpointPath => Path.Combine(_options.CheckpointDirectory, Checkpoint.BestFileName);

        /// <summary>
        /// Checks every output location before any work, so a bad path fails in a second, not after training.
        /// Rank 0 only: other ranks write nothing.
        /// </summary>
        public static void Prepare(TrainingOptions options, bool primary)
        {
            if (!primary) return;
            PrepareDirectory(options.CheckpointDirectory, "--checkpoint-dir");
            if (options.ReportPath is { Length: > 0 } report) PrepareDirectory(Path.GetDirectoryName(Path.GetFullPath(report))!, "--report");
            if (options.TensorBoardDirectory is { Length: > 0 } events) PrepareDirectory(events, "--tensorboard");
        }

        public void Note(string message)
        {
            if (_primary) _progress.Note(message);
        }

        public void BeginEpoch(int epoch, int epochs, long steps)
        {
            if (_primary) _progress.BeginEpoch(epoch, epochs, steps);
        }

        public void Step(long stepInEpoch, double meanLoss, double accuracy, double samplesPerSecond, TimeSpan eta)
        {
            if (_primary) _progress.Step(stepInEpoch, meanLoss, accuracy, samplesPerSecond, eta);
        }

        /// <summary>Whether checkpoints are written in shards by every rank.</summary>
        public bool Sharded => _shards is not null;

        /// <summary>
        /// Nothing lost: a fresh run keeps the previous run's checkpoint beside the new one. A sharded checkpoint's index
        /// moves; its shards stay where they are, named by it (those of the checkpoint it replaces are deleted).
        /// </summary>
        public void KeepPreviousCheckpoint()
        {
            if (!_primary || !File.Exists(CheckpointPath)) return;
            var previous = Path.Combine(_options.CheckpointDirectory, "previous-" + Checkpoint.FileName);
            MoveOver(CheckpointPath, previous);
            // The previous run's best must not pass for this run's.
            if (File.Exists(BestCheckpointPath))
                MoveOver(BestCheckpointPath, Path.Combine(_options.CheckpointDirectory, "previous-" + Checkpoint.BestFileName));
            Note($"Starting fresh; the previous checkpoint was moved to {previous} (use --resume to continue a run).");
        }

        private static void MoveOver(string from, string to)
        {
            var stale = ShardedCheckpoint.ShardsNamedBy(to).Except(ShardedCheckpoint.ShardsNamedBy(from)).ToList();
            File.Move(from, to, overwrite: true);
            foreach (var shard in stale) File.Delete(shard);
        }

        /// <summary>The epoch's checkpoint (every rank takes part when it is sharded), TensorBoard scalars and progress line.</summary>
        public void EndEpoch(nn.Module model, OptimizerHelper optimizer, CheckpointState state, EpochMetrics metrics, int epochs, TimeSpan eta)
        {
            if (_shards is not null) ShardedCheckpoint.Save(CheckpointPath, model, optimizer, state, _shards, _level);
            if (!_primary) return;
            if (_shards is null) SaveWhole(CheckpointPath, model, optimizer, state);

            if (_options.TensorBoardDirectory is { Length: > 0 } dir)
            {
                _tensorboard ??= torch.utils.tensorboard.SummaryWriter(dir);
                int e = metrics.Epoch;
                _tensorboard.add_scalar("loss/train", (float)metrics.TrainLoss, e);
                if (metrics.ValLoss is { } vl) _tensorboard.add_scalar("loss/validation", (float)vl, e);
                if (!double.IsNaN(metrics.TrainAccuracy)) _tensorboard.add_scalar("accuracy/train", (float)metrics.TrainAccuracy, e);
                if (metrics.ValAccuracy is { } va) _tensorboard.add_scalar("accuracy/validation", (float)va, e);
                _tensorboard.add_scalar("learning_rate", (float)metrics.LearningRate, e);
            }
            _progress.EndEpoch(metrics, eta);
        }

        /// <summary>The epoch's checkpoint again as <c>best.ckpt</c>: its validation loss is the lowest so far (sharded: every rank calls it).</summary>
        public void SaveBest(nn.Module model, OptimizerHelper optimizer, CheckpointState state)
        {
            if (_shards is not null) ShardedCheckpoint.Save(BestCheckpointPath, model, optimizer, state, _shards, _level);
            else if (_primary) SaveWhole(BestCheckpointPath, model, optimizer, state);
        }

        /// <summary>A whole checkpoint; when it replaces a sharded one (a sharded run resumed without sharding), that one's shards are deleted.</summary>
        private static void SaveWhole(string path, nn.Module model, OptimizerHelper optimizer, CheckpointState state)
        {
            var stale = ShardedCheckpoint.ShardsNamedBy(path);
            Checkpoint.Save(path, model, optimizer, state);
            foreach (var shard in stale) File.Delete(shard);
        }

        /// <summary>
        /// The JSON report and the training-curve PNG beside it, if asked for; then the final and the best checkpoint,
        /// each with its epoch and figures (<paramref name="bestTestAccuracy"/>: the best checkpoint's on the test
        /// data, when known), and which one the inference commands take by default.
        /// </summary>
        public void Finish(TrainingReport report, double? bestTestAccuracy = null)
        {
            if (!_primary) return;
            if (_options.ReportPath is { Length: > 0 } reportPath)
            {
                report.Write(reportPath);
                var png = Path.ChangeExtension(reportPath, ".png");
                // A missing plotting library must not fail a finished run: the report and checkpoint stand.
                Note(TrainingCurves.TrySave(png, report.History, out var plotError)
                    ? $"report: {reportPath}, curves: {png}"
                    : $"report: {reportPath} (curves not drawn: {plotError})");
            }
            // The commands look in checkpoints/<Model>/ by default; from another --checkpoint-dir they need --model.
            bool defaultDirectory = string.Equals(Path.GetFullPath(_options.CheckpointDirectory),
                Path.GetFullPath(Path.Combine("checkpoints", _options.Plan.ModelName)), StringComparison.Ordinal);
            string UsedByDefault = defaultDirectory
                ? "; evaluate, predict and export use it unless --model names another file"
                : "; evaluate, predict and export take it with --model";
            bool hasBest = report.BestEpoch is not null && File.Exists(BestCheckpointPath);
            var last = report.History.Count > 0 ? report.History[^1] : null;
            Note($"checkpoint: {CheckpointPath} (final, epoch {last?.Epoch ?? 0}{Figures(last, report.TestAccuracy)})" + (hasBest ? "" : UsedByDefault));
            if (hasBest && report.BestEpoch is { } best)
                Note($"best: {BestCheckpointPath} (epoch {best}{Figures(report.History.FirstOrDefault(h => h.Epoch == best), best == last?.Epoch ? report.TestAccuracy : bestTestAccuracy)}" +
                     $"{(report.StopReason == TrainingReport.StoppedEarly ? "; stopped early" : "")})" + UsedByDefault);
        }

        /// <summary>", validation loss …, validation accuracy …, test accuracy …", each where known.</summary>
        private static string Figures(EpochMetrics? epoch, double? testAccuracy) =>
            (epoch?.ValLoss is { } loss ? $", validation loss {TrainingProgress.Format(loss)}" : "") +
            (epoch?.ValAccuracy is { } accuracy && !double.IsNaN(accuracy) ? $", validation accuracy {TrainingProgress.Percent(accuracy)}" : "") +
            (testAccuracy is { } test ? $", test accuracy {TrainingProgress.Percent(test)}" : "");

        private static void PrepareDirectory(string directory, string option)
        {
            try
            {
                Directory.CreateDirectory(directory);
                var probe = Path.Combine(directory, $".modeldsl-write-test-{Environment.ProcessId}");
                File.WriteAllBytes(probe, Array.Empty<byte>());
                File.Delete(probe);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
            {
                throw new TrainingException($"{option} {directory} is not a writable directory: {e.Message}");
            }
        }
    }
}
