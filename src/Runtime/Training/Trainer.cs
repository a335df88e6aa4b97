using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using ModelDsl.Runtime.Data;
using TensorDataset = ModelDsl.Runtime.Data.TensorDataset;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// The training loop behind every generated trainer: data, optimiser, schedule, progress, a checkpoint each
    /// epoch, and the report. Batches are index-selected from whole tensors, so the hot path allocates nothing
    /// per sample.
    /// </summary>
    public static class Trainer
    {
        /// <summary>Trains as <paramref name="options"/> says. Throws <see cref="TrainingException"/> for problems the user can fix.</summary>
        public static int Train<TModel>(TrainingOptions options, Func<TModel> create)
            where TModel : nn.Module<Tensor, Tensor>
        {
            var plan = options.Plan;
            var device = ResolveDevice(options.Device);
            // TorchSharp does not implement use_deterministic_algorithms; libtorch's CPU kernels are deterministic
            // for a fixed thread count, so --deterministic pins it (to 1 unless --threads says otherwise).
            if (options.Threads > 0) torch.set_num_threads(options.Threads);
            else if (options.Deterministic) torch.set_num_threads(1);

            // Every output location is prepared before any work, so a bad path fails in a second, not after training.
            PrepareDirectory(options.CheckpointDirectory, "--checkpoint-dir");
            if (options.ReportPath is { Length: > 0 } report) PrepareDirectory(Path.GetDirectoryName(Path.GetFullPath(report))!, "--report");
            if (options.TensorBoardDirectory is { Length: > 0 } events) PrepareDirectory(events, "--tensorboard");

            var labelKind = plan.IsClassification ? LabelKind.ClassIndex : LabelKind.Float;
            using var all = LoadData(plan.Data, plan, labelKind);
            CheckLabels(all, plan);
            TensorDataset train, validation;
            try
            {
                (train, validation) = all.Split(plan.ValidationFraction, plan.Seed);
            }
            catch (ArgumentOutOfRangeException e)
            {
                throw new TrainingException($"{plan.Data}: {e.Message}");
            }
            using var trainSet = train;
            using var validationSet = validation;
            using var testSet = plan.TestData.Length > 0 ? LoadData(plan.TestData, plan, labelKind) : null;
            if (testSet is not null) CheckLabels(testSet, plan with { Data = plan.TestData });

            // The seed fixes the initial weights; shuffling uses seed + epoch (as DistributedSampler does).
            torch.manual_seed(plan.Seed);
            using var model = create();
            model.to(device);
            var optimizer = CreateOptimizer(plan, model);
            var trainingStep = new TrainingStep(model, optimizer, plan.Loss, plan.GradientClipNorm);

            var checkpointPath = Path.Combine(options.CheckpointDirectory, Checkpoint.FileName);
            var history = new List<EpochMetrics>();
            int startEpoch = 0;
            long step = 0;

            return TrainingProgress.Run(options.PlainProgress, progress =>
            {
                if (options.Resume)
                {
                    if (File.Exists(checkpointPath))
                    {
                        // A CheckpointException (corrupt, other plan) reaches TrainingHost: one line, exit code 2.
                        var state = Checkpoint.Load(checkpointPath, model, optimizer, plan.ModelName, plan.Fingerprint());
                        torch.set_rng_state(torch.tensor(state.RngState, dtype: ScalarType.Byte));
                        history.AddRange(state.History);
                        startEpoch = state.Epoch;
                        step = state.Step;
                        progress.Note($"Resuming {plan.ModelName} from {checkpointPath} after epoch {startEpoch}.");
                    }
                    else
                    {
                        progress.Note($"No checkpoint at {checkpointPath}; starting from scratch.");
                    }
                }
                else if (File.Exists(checkpointPath))
                {
                    // Nothing lost: a fresh run keeps the previous run's checkpoint beside the new one.
                    var previous = Path.Combine(options.CheckpointDirectory, "previous-" + Checkpoint.FileName);
                    File.Move(checkpointPath, previous, overwrite: true);
                    progress.Note($"Starting fresh; the previous checkpoint was moved to {previous} (use --resume to continue a run).");
                }

                var tensorboard = options.TensorBoardDirectory is { Length: > 0 } dir ? torch.utils.tensorboard.SummaryWriter(dir) : null;
                var clock = Stopwatch.StartNew();
                long samplesSeen = 0;
                long steps = trainSet.BatchCount(plan.BatchSize);

                for (int epoch = startEpoch; epoch < plan.Epochs; epoch++)
                {
                    double lr = plan.LearningRateAt(epoch);
                    foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;

                    progress.BeginEpoch(epoch + 1, plan.Epochs, steps);
                    model.train();
                    if (options.Deterministic) DisableDropout(model);

                    var epochClock = Stopwatch.StartNew();
                    double lossSum = 0;
                    long correct = 0, seen = 0, stepInEpoch = 0;
                    foreach (var (xb, yb) in trainSet.Batches(plan.BatchSize, shuffle: true, plan.Seed, epoch))
                    {
                        using var scope = torch.NewDisposeScope();
                        var x = xb.to(device);
                        var y = yb.to(device);
                        var result = trainingStep.Run(x, y);
                        if (!result.Applied)
                            throw Diverged(result.Loss, epoch + 1, step + 1, checkpointPath, history);

                        long n = x.shape[0];
                        step++;
                        stepInEpoch++;
                        seen += n;
                        lossSum += result.Loss * n;
                        correct += result.Correct;

                        double elapsed = epochClock.Elapsed.TotalSeconds;
                        double perStep = elapsed / stepInEpoch;
                        var eta = TimeSpan.FromSeconds(perStep * ((steps - stepInEpoch) + steps * (plan.Epochs - epoch - 1)));
                        progress.Step(stepInEpoch, lossSum / seen, HasAccuracy(plan) ? (double)correct / seen : double.NaN, seen / Math.Max(elapsed, 1e-9), eta);
                    }

                    samplesSeen += seen;
                    var (valLoss, valAccuracy) = validationSet.Count > 0 ? Evaluate(model, validationSet, plan, device) : (double.NaN, double.NaN);
                    var metrics = new EpochMetrics
                    {
                        Epoch = epoch + 1,
                        TrainLoss = lossSum / Math.Max(1, seen),
                        TrainAccuracy = HasAccuracy(plan) ? (double)correct / Math.Max(1, seen) : double.NaN,
                        ValLoss = validationSet.Count > 0 ? valLoss : null,
                        ValAccuracy = validationSet.Count > 0 && HasAccuracy(plan) ? valAccuracy : null,
                        LearningRate = lr,
                        Seconds = epochClock.Elapsed.TotalSeconds,
                        Samples = seen,
                    };
                    history.Add(metrics);

                    // The RNG state after the epoch is what the next epoch starts from: a resumed run continues
                    // exactly where an uninterrupted one would.
                    Checkpoint.Save(checkpointPath, model, optimizer, new CheckpointState
                    {
                        ModelName = plan.ModelName,
                        PlanFingerprint = plan.Fingerprint(),
                        Epoch = epoch + 1,
                        Step = step,
                        RngState = torch.get_rng_state().data<byte>().ToArray(),
                        History = history.ToList(),
                        Seed = plan.Seed,
                    });

                    if (tensorboard is not null)
                    {
                        tensorboard.add_scalar("loss/train", (float)metrics.TrainLoss, epoch + 1);
                        if (metrics.ValLoss is { } vl) tensorboard.add_scalar("loss/validation", (float)vl, epoch + 1);
                        if (!double.IsNaN(metrics.TrainAccuracy)) tensorboard.add_scalar("accuracy/train", (float)metrics.TrainAccuracy, epoch + 1);
                        if (metrics.ValAccuracy is { } va) tensorboard.add_scalar("accuracy/validation", (float)va, epoch + 1);
                        tensorboard.add_scalar("learning_rate", (float)lr, epoch + 1);
                    }

                    double perEpoch = clock.Elapsed.TotalSeconds / (epoch + 1 - startEpoch);
                    progress.EndEpoch(metrics, TimeSpan.FromSeconds(perEpoch * (plan.Epochs - epoch - 1)));
                }

                double trainSeconds = clock.Elapsed.TotalSeconds;
                double? testAccuracy = null;
                if (testSet is not null && HasAccuracy(plan))
                {
                    testAccuracy = Evaluate(model, testSet, plan, device).Accuracy;
                    progress.Note($"test accuracy {TrainingProgress.Percent(testAccuracy.Value)} on {testSet.Count} samples ({plan.TestData})");
                }

                var report = new TrainingReport
                {
                    Model = plan.ModelName,
                    WorldSize = 1,
                    GlobalBatchSize = plan.BatchSize,
                    Epochs = plan.Epochs,
                    Steps = step,
                    TrainSeconds = trainSeconds,
                    SamplesPerSecond = samplesSeen / Math.Max(trainSeconds, 1e-9),
                    FinalTrainLoss = history.Count > 0 ? history[^1].TrainLoss : double.NaN,
                    ValLoss = history.Count > 0 ? history[^1].ValLoss : null,
                    TestAccuracy = testAccuracy,
                    ParamCount = TrainingReport.ParameterCount(model),
                    ParamL2 = TrainingReport.ParameterL2(model),
                    History = history.ToList(),
                };

                if (options.ReportPath is { Length: > 0 } reportPath)
                {
                    report.Write(reportPath);
                    var png = Path.ChangeExtension(reportPath, ".png");
                    // A missing plotting library must not fail a finished run: the report and checkpoint stand.
                    progress.Note(TrainingCurves.TrySave(png, history, out var plotError)
                        ? $"report: {reportPath}, curves: {png}"
                        : $"report: {reportPath} (curves not drawn: {plotError})");
                }
                progress.Note($"checkpoint: {checkpointPath}");
                return 0;
            });
        }

        /// <summary>Class labels must index the model's output classes; libtorch would fail deep inside the loss.</summary>
        private static void CheckLabels(TensorDataset data, TrainingPlan plan)
        {
            if (!plan.IsClassification || plan.Classes < 1 || data.Count == 0) return;
            long max = data.Labels.max().item<long>();
            if (max >= plan.Classes)
                throw new TrainingException($"{plan.Data}: class label {max} is out of range: {plan.ModelName} outputs {plan.Classes} classes (labels 0..{plan.Classes - 1})");
        }

        private static TensorDataset LoadData(string path, TrainingPlan plan, LabelKind labelKind)
        {
            string resolved = ResolvePath(path);
            try
            {
                var data = CsvDataset.Load(resolved, plan.SampleShape, labelKind);
                if (plan.FeatureScale != 1.0 && !plan.InputIsInteger) data.Features.mul_(plan.FeatureScale);
                if (!plan.InputIsInteger) return data;

                // Token-id models take int64 features; the CSV reader yields float32.
                using (data)
                    return new TensorDataset(data.Features.to_type(ScalarType.Int64), data.Labels.clone());
            }
            catch (Exception e) when (e is DataFormatException or FileNotFoundException)
            {
                throw new TrainingException(e.Message, TrainingHost.UsageError, e);
            }
        }

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

        /// <summary>A relative data path is looked up in the working directory, then beside the program.</summary>
        private static string ResolvePath(string path)
        {
            if (Path.IsPathRooted(path) || File.Exists(path)) return Path.GetFullPath(path);
            var besideProgram = Path.Combine(AppContext.BaseDirectory, path);
            return File.Exists(besideProgram) ? besideProgram : Path.GetFullPath(path);
        }

        private static Device ResolveDevice(string device)
        {
            if (device == "cuda")
            {
                if (!torch.cuda.is_available())
                    throw new TrainingException("--device cuda: CUDA is not available (this build uses the CPU libtorch; build with -p:ModelDslCuda=true on a CUDA machine)");
                return torch.CUDA;
            }
            return torch.CPU;
        }

        /// <summary>The declared optimiser over the model's parameters, with PyTorch's defaults for the rest.</summary>
        public static OptimizerHelper CreateOptimizer(TrainingPlan plan, nn.Module model) => plan.Optimizer switch
        {
            Optimizer.SGD => torch.optim.SGD(model.parameters(), plan.LearningRate, plan.Momentum, 0, plan.EffectiveWeightDecay, plan.Nesterov, false),
            Optimizer.Adam => torch.optim.Adam(model.parameters(), plan.LearningRate, 0.9, 0.999, 1e-8, plan.EffectiveWeightDecay, false, false),
            _ => torch.optim.AdamW(model.parameters(), plan.LearningRate, 0.9, 0.999, 1e-8, plan.EffectiveWeightDecay, false, false),
        };

        internal static Tensor ComputeLoss(Loss loss, Tensor output, Tensor target) => loss switch
        {
            Loss.CrossEntropy => nn.functional.cross_entropy(output, target),
            Loss.NLL => nn.functional.nll_loss(output, target),
            Loss.MSE => nn.functional.mse_loss(output, target.reshape(output.shape)),
            _ => nn.functional.binary_cross_entropy_with_logits(output, target.reshape(output.shape)),
        };

        private static bool HasAccuracy(TrainingPlan plan) => plan.IsClassification || plan.Loss == Loss.BCEWithLogits;

        // No dispose scope of its own: every caller runs inside a per-batch scope, and a nested one per step costs time.
        internal static long CountCorrect(Loss loss, Tensor output, Tensor target)
        {
            return loss switch
            {
                Loss.CrossEntropy or Loss.NLL => output.argmax(1).eq(target).sum().item<long>(),
                Loss.BCEWithLogits => output.reshape(target.shape).gt(0).eq(target.gt(0.5)).sum().item<long>(),
                _ => 0,
            };
        }

        private static (double Loss, double Accuracy) Evaluate(nn.Module<Tensor, Tensor> model, TensorDataset data, TrainingPlan plan, Device device)
        {
            model.eval();
            using var noGrad = torch.no_grad();
            double lossSum = 0;
            long correct = 0, seen = 0;
            foreach (var (xb, yb) in data.Batches(1024, shuffle: false, 0, 0))
            {
                using var scope = torch.NewDisposeScope();
                var x = xb.to(device);
                var y = yb.to(device);
                var output = model.call(x);
                long n = x.shape[0];
                lossSum += ComputeLoss(plan.Loss, output, y).item<float>() * n;
                correct += CountCorrect(plan.Loss, output, y);
                seen += n;
            }
            return (lossSum / Math.Max(1, seen), (double)correct / Math.Max(1, seen));
        }

        private static void DisableDropout(nn.Module model)
        {
            foreach (var m in model.modules())
                if (m is Dropout) m.eval();
        }

        private static TrainingException Diverged(double value, int epoch, long step, string checkpointPath, List<EpochMetrics> history) =>
            new($"the loss became {value} at epoch {epoch}, step {step}; training stopped. " +
                (history.Count > 0
                    ? $"The last good checkpoint (epoch {history[^1].Epoch}) is kept at {checkpointPath}."
                    : "No epoch of this run had completed, so it wrote no checkpoint.") +
                " Try a lower --lr or gradient clipping.", TrainingHost.Diverged);
    }
}
