using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using TensorDataset = ModelDsl.Runtime.Data.TensorDataset;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// The training loop behind every generated trainer: data, optimiser, schedule, a checkpoint each epoch, and
    /// the report. How ranks cooperate is the <see cref="ITrainingStrategy"/>'s business, what is printed or
    /// written is <see cref="RunOutputs"/>' (rank 0 only); this class is the loop itself.
    /// </summary>
    public static class Trainer
    {
        /// <summary>Trains as <paramref name="options"/> says, in one process. Throws <see cref="TrainingException"/> for problems the user can fix.</summary>
        public static int Train<TModel>(TrainingOptions options, Func<TModel> create)
            where TModel : nn.Module<Tensor, Tensor>
        {
            using var strategy = new SingleProcessStrategy();
            return Train(options, create, strategy);
        }

        /// <summary>Trains as <paramref name="options"/> says with <paramref name="strategy"/> deciding how ranks cooperate.</summary>
        public static int Train<TModel>(TrainingOptions options, Func<TModel> create, ITrainingStrategy strategy)
            where TModel : nn.Module<Tensor, Tensor>
        {
            var plan = options.Plan;
            var device = ResolveDevice(options.Device);
            // TorchSharp does not implement use_deterministic_algorithms; libtorch's CPU kernels are deterministic
            // for a fixed thread count, so --deterministic pins it (to 1 unless --threads says otherwise).
            if (options.Threads > 0) torch.set_num_threads(options.Threads);
            else if (options.Deterministic) torch.set_num_threads(1);

            bool primary = strategy.Rank == 0;
            RunOutputs.Prepare(options, primary);
            using var data = TrainingData.Load(plan);

            // The seed fixes the initial weights; shuffling uses seed + epoch (as DistributedSampler does).
            torch.manual_seed(plan.Seed);
            using var model = create();
            model.to(device);
            var optimizer = CreateOptimizer(plan, model);
            var trainingStep = new TrainingStep(model, optimizer, plan.Loss, plan.GradientClipNorm, strategy);

            return TrainingProgress.Run(options.PlainProgress || !primary, progress =>
            {
                var outputs = new RunOutputs(options, progress, primary);
                var history = new List<EpochMetrics>();
                int startEpoch = 0;
                long step = 0;
                if (options.Resume && File.Exists(outputs.CheckpointPath))
                {
                    // A CheckpointException (corrupt, other plan) reaches TrainingHost: one line, exit code 2.
                    var state = Checkpoint.Load(outputs.CheckpointPath, model, optimizer, plan.ModelName, plan.Fingerprint());
                    torch.set_rng_state(torch.tensor(state.RngState, dtype: ScalarType.Byte));
                    history.AddRange(state.History);
                    (startEpoch, step) = (state.Epoch, state.Step);
                    outputs.Note($"Resuming {plan.ModelName} from {outputs.CheckpointPath} after epoch {startEpoch}.");
                }
                else if (options.Resume) outputs.Note($"No checkpoint at {outputs.CheckpointPath}; starting from scratch.");
                else outputs.KeepPreviousCheckpoint();
                strategy.Start(model);

                var clock = Stopwatch.StartNew();
                long samplesSeen = 0;
                long steps = strategy.BatchCount(data.Train, plan.BatchSize);
                bool hasAccuracy = LossFunctions.HasAccuracy(plan.Loss);
                StepResult? diverged = null;
                bool stoppedEarly = false;

                for (int epoch = startEpoch; epoch < plan.Epochs && diverged is null; epoch++)
                {
                    double lr = plan.LearningRateAt(epoch);
                    foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;

                    outputs.BeginEpoch(epoch + 1, plan.Epochs, steps);
                    model.train();
                    if (options.Deterministic) DisableDropout(model);

                    var epochClock = Stopwatch.StartNew();
                    double lossSum = 0;
                    long correct = 0, seen = 0, stepInEpoch = 0;
                    foreach (var (xb, yb) in strategy.Batches(data.Train, plan.BatchSize, plan.Seed, epoch))
                    {
                        using var scope = torch.NewDisposeScope();
                        var x = xb.to(device);
                        var y = yb.to(device);
                        var result = Guarded(() => trainingStep.Run(x, y), model, x, plan.Loss, $"training step {step + 1} (epoch {epoch + 1})");
                        if (!result.Applied)
                        {
                            diverged = result;
                            break;
                        }

                        long n = x.shape[0];
                        strategy.AfterStep(model, ++step);
                        stepInEpoch++;
                        seen += n;
                        lossSum += result.Loss * n;
                        correct += result.Correct;

                        double elapsed = epochClock.Elapsed.TotalSeconds;
                        var eta = TimeSpan.FromSeconds(elapsed / stepInEpoch * ((steps - stepInEpoch) + steps * (plan.Epochs - epoch - 1)));
                        outputs.Step(stepInEpoch, lossSum / seen, hasAccuracy ? (double)correct / seen : double.NaN, seen / Math.Max(elapsed, 1e-9), eta);
                    }
                    if (diverged is not null) break;

                    // Every rank saw its own share: the epoch's figures are sums over all ranks.
                    var totals = new[] { lossSum, correct, seen };
                    strategy.SumAcrossRanks(totals);
                    samplesSeen += (long)totals[2];
                    var metrics = EpochEnd(model, data.Validation, plan, device, epoch, lr, epochClock.Elapsed.TotalSeconds, totals);
                    history.Add(metrics);

                    // The RNG state after the epoch is what the next epoch starts from: a resumed run continues
                    // exactly where an uninterrupted one would.
                    double perEpoch = clock.Elapsed.TotalSeconds / (epoch + 1 - startEpoch);
                    var state = new CheckpointState
                    {
                        ModelName = plan.ModelName,
                        PlanFingerprint = plan.Fingerprint(),
                        Epoch = epoch + 1,
                        Step = step,
                        RngState = torch.get_rng_state().data<byte>().ToArray(),
                        History = history.ToList(),
                        Seed = plan.Seed,
                    };
                    outputs.EndEpoch(model, optimizer, state, metrics, plan.Epochs, TimeSpan.FromSeconds(perEpoch * (plan.Epochs - epoch - 1)));

                    // The monitored metric: best.ckpt on an improvement, and the early-stopping decision. Every rank
                    // computes the verdict from its own history; the stop goes through a reduction all the same so
                    // that no rank leaves the loop alone (under local SGD the ranks' validation losses may differ).
                    var verdict = EarlyStopping.After(history, plan.EarlyStoppingPatience);
                    if (verdict.Improved) outputs.SaveBest(model, optimizer, state);
                    if (plan.EarlyStoppingPatience > 0)
                    {
                        var stop = new[] { verdict.Stop ? 1.0 : 0.0 };
                        strategy.SumAcrossRanks(stop);
                        if (stop[0] > 0)
                        {
                            stoppedEarly = true;
                            outputs.Note($"Early stopping after epoch {epoch + 1}: the validation loss has not improved for {epoch + 1 - verdict.BestEpoch} epochs (patience {plan.EarlyStoppingPatience}); the best was epoch {verdict.BestEpoch}.");
                            break;
                        }
                    }
                }

                if (diverged is { } d)
                    throw Diverged(d.Loss, history.Count + 1, step + 1, outputs.CheckpointPath, history);

                double trainSeconds = clock.Elapsed.TotalSeconds;
                double? testAccuracy = null;
                if (data.Test is { } test && hasAccuracy)
                {
                    testAccuracy = Evaluate(model, test, plan.Loss, device).Accuracy;
                    outputs.Note($"test accuracy {TrainingProgress.Percent(testAccuracy.Value)} on {test.Count} samples ({plan.TestData})");
                }

                var best = EarlyStopping.After(history, plan.EarlyStoppingPatience);
                var report = new TrainingReport
                {
                    Model = plan.ModelName,
                    WorldSize = strategy.WorldSize,
                    GlobalBatchSize = plan.BatchSize * strategy.WorldSize,
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
                    BestEpoch = best.BestEpoch,
                    BestValLoss = best.BestValLoss,
                    StopReason = stoppedEarly ? TrainingReport.StoppedEarly : TrainingReport.Completed,
                };
                strategy.Finish(model, report);
                outputs.Finish(report);
                return 0;
            });
        }

        /// <summary>The epoch's metrics from the rank-summed training figures and a validation pass.</summary>
        private static EpochMetrics EpochEnd(nn.Module<Tensor, Tensor> model, TensorDataset validation, TrainingPlan plan, Device device,
            int epoch, double lr, double seconds, double[] totals)
        {
            bool hasAccuracy = LossFunctions.HasAccuracy(plan.Loss);
            double seen = Math.Max(1, totals[2]);
            var (valLoss, valAccuracy) = validation.Count > 0 ? Evaluate(model, validation, plan.Loss, device) : (double.NaN, double.NaN);
            return new EpochMetrics
            {
                Epoch = epoch + 1,
                TrainLoss = totals[0] / seen,
                TrainAccuracy = hasAccuracy ? totals[1] / seen : double.NaN,
                ValLoss = validation.Count > 0 ? valLoss : null,
                ValAccuracy = validation.Count > 0 && hasAccuracy ? valAccuracy : null,
                LearningRate = lr,
                Seconds = seconds,
                Samples = (long)totals[2],
            };
        }

        /// <summary>Runs a step; a libtorch error becomes one line naming the step and the layer (or the loss) that failed.</summary>
        private static T Guarded<T>(Func<T> run, nn.Module<Tensor, Tensor> model, Tensor x, Loss loss, string where)
        {
            try
            {
                return run();
            }
            catch (Exception e) when (StepFailure.IsNative(e))
            {
                throw StepFailure.Explain(e, model, x, loss, where);
            }
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

        /// <summary>Mean loss and accuracy of <paramref name="model"/> on <paramref name="data"/>, in eval mode under no-grad.</summary>
        public static (double Loss, double Accuracy) Evaluate(nn.Module<Tensor, Tensor> model, TensorDataset data, Loss loss, Device device)
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
                var output = Guarded(() => model.call(x), model, x, loss, "evaluation");
                long n = x.shape[0];
                lossSum += Guarded(() => LossFunctions.Compute(loss, output, y), model, x, loss, "evaluation").item<float>() * n;
                correct += LossFunctions.CountCorrect(loss, output, y);
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
