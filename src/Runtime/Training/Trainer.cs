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
            Internal.LibTorchContext.TurnOffNnpack(); // libtorch is loaded now (Internal/LibTorchContext.cs)
            model.to(device);
            var optimizer = CreateOptimizer(plan, model);

            return TrainingProgress.Run(options.PlainProgress || !primary, progress =>
            {
                var outputs = new RunOutputs(options, progress, primary, strategy);
                using var precision = MixedPrecision.TrainingPrecision.Create(plan.Precision, model, create, device, options.Cpu ?? MixedPrecision.CpuFeatures.Current, outputs.Note);
                // Recompute.Blocks: the blocks of the module the steps run keep only their input until training ends.
                if (plan.Recompute == Recompute.Blocks && BlockRecompute.CountBlocks(precision.Module) == 0)
                    outputs.Note("--recompute blocks: the model has no block the trainer can recompute (a TransformerBlock, or a [Block] in a generated forward); it trains without recomputation");
                using var recompute = plan.Recompute == Recompute.Blocks ? BlockRecompute.Apply(precision.Module) : null;
                var loop = new EpochLoop(options, model, optimizer, strategy, data, outputs, device, precision);
                var history = new List<EpochMetrics>();
                int startEpoch = 0;
                Dictionary<string, byte[]>? strategyState = null;
                if (options.Resume && File.Exists(outputs.CheckpointPath))
                {
                    // A CheckpointException (corrupt, other plan) reaches TrainingHost: one line, exit code 2.
                    // A sharded checkpoint: the weights from every shard, the optimiser state of the parameters this rank owns.
                    var state = ShardedCheckpoint.IsSharded(outputs.CheckpointPath)
                        ? ShardedCheckpoint.Load(outputs.CheckpointPath, model, optimizer, plan.ModelName, plan.Fingerprint(), ShardedCheckpoint.StateNeeded(model, strategy))
                        : Checkpoint.Load(outputs.CheckpointPath, model, optimizer, plan.ModelName, plan.Fingerprint());
                    torch.set_rng_state(torch.tensor(state.RngState, dtype: ScalarType.Byte));
                    history.AddRange(state.History);
                    strategyState = state.StrategyState;
                    (startEpoch, loop.Step) = (state.Epoch, state.Step);
                    outputs.Note($"Resuming {plan.ModelName} from {outputs.CheckpointPath} after epoch {startEpoch}.");
                }
                else if (options.Resume) outputs.Note($"No checkpoint at {outputs.CheckpointPath}; starting from scratch.");
                else outputs.KeepPreviousCheckpoint();
                strategy.UsePrecision(precision);
                strategy.Start(model, loop.Step, optimizer);
                strategy.RestoreState(strategyState);

                var clock = Stopwatch.StartNew();
                bool stoppedEarly = false;
                for (int epoch = startEpoch; epoch < plan.Epochs; epoch++)
                {
                    var metrics = loop.Run(epoch, plan.Epochs, plan.LearningRateAt(epoch), perStepSchedule: plan.ScheduleInterval == ScheduleInterval.Step)
                        ?? throw Diverged(loop.Divergence, epoch + 1, outputs.CheckpointPath, history);
                    history.Add(metrics);

                    // The RNG state after the epoch is what the next epoch starts from: a resumed run continues
                    // exactly where an uninterrupted one would.
                    double perEpoch = clock.Elapsed.TotalSeconds / (epoch + 1 - startEpoch);
                    using var rng = torch.get_rng_state();
                    var state = new CheckpointState
                    {
                        ModelName = plan.ModelName,
                        PlanFingerprint = plan.Fingerprint(),
                        Epoch = epoch + 1,
                        Step = loop.Step,
                        RngState = rng.data<byte>().ToArray(),
                        History = history.ToList(),
                        Seed = plan.Seed,
                        StrategyState = strategy.SaveState(),
                    };
                    outputs.EndEpoch(model, optimizer, state, metrics, plan.Epochs, TimeSpan.FromSeconds(perEpoch * (plan.Epochs - epoch - 1)));

                    // The monitored metric: best.ckpt on an improvement, and the early-stopping decision. Every rank
                    // computes the verdict from its own history; the stop goes through a reduction all the same so
                    // that no rank leaves the loop alone (under local SGD the ranks' validation losses may differ).
                    var verdict = EarlyStopping.After(history, plan.EarlyStoppingPatience);
                    bool improved = verdict.Improved;
                    if (outputs.Sharded)
                    {
                        // Every rank writes its shard of best.ckpt: all follow rank 0's verdict (it alone wrote best.ckpt before).
                        var vote = new[] { primary && improved ? 1.0 : 0.0 };
                        strategy.SumAcrossRanks(vote);
                        improved = vote[0] > 0;
                    }
                    if (improved) outputs.SaveBest(model, optimizer, state);
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

                recompute?.Dispose(); // evaluation, the report and the optimisation passes see the model as declared
                double trainSeconds = clock.Elapsed.TotalSeconds;
                bool hasAccuracy = LossFunctions.HasAccuracy(plan.Loss);
                double? testAccuracy = null;
                if (data.Test is { } test && hasAccuracy)
                {
                    testAccuracy = Evaluate(model, test, plan, device).Accuracy;
                    outputs.Note($"test accuracy {TrainingProgress.Percent(testAccuracy.Value)} on {test.Count} samples ({plan.TestData})");
                }

                var best = EarlyStopping.After(history, plan.EarlyStoppingPatience);
                var report = new TrainingReport
                {
                    Model = plan.ModelName,
                    WorldSize = strategy.WorldSize,
                    GlobalBatchSize = plan.BatchSize * plan.GradientAccumulation * strategy.WorldSize,
                    Epochs = plan.Epochs,
                    Steps = loop.Step,
                    TrainSeconds = trainSeconds,
                    SamplesPerSecond = loop.SamplesSeen / Math.Max(trainSeconds, 1e-9),
                    TokensPerSecond = plan.IsLanguageModel ? loop.SamplesSeen * plan.SampleShape[0] / Math.Max(trainSeconds, 1e-9) : null,
                    FinalTrainLoss = history.Count > 0 ? history[^1].TrainLoss : double.NaN,
                    ValLoss = history.Count > 0 ? history[^1].ValLoss : null,
                    TestAccuracy = testAccuracy,
                    ParamCount = TrainingReport.ParameterCount(model),
                    ParamL2 = TrainingReport.ParameterL2(model),
                    History = history.ToList(),
                    BestEpoch = best.BestEpoch,
                    BestValLoss = best.BestValLoss,
                    StopReason = stoppedEarly ? TrainingReport.StoppedEarly : TrainingReport.Completed,
                    Restarts = options.Restarts,
                    Precision = precision.Name,
                };
                strategy.Finish(model, report);
                // The plan at the precision that ran (bf16 falls back to fp32 on a CPU without bfloat16 instructions).
                var ran = precision.Name == "bf16" ? plan : plan with { Precision = Precision.Float32 };
                report.SetSection("memory", loop.Memory.Report(ran, strategy.Rank, strategy.WorldSize));
                // The best checkpoint's test accuracy, for the final lines: what evaluate will say of it (rank 0 only).
                double? bestTestAccuracy = null;
                if (primary && data.Test is { } testData && hasAccuracy && best.BestEpoch is { } bestEpoch && bestEpoch != history[^1].Epoch
                    && File.Exists(outputs.BestCheckpointPath))
                {
                    // Building a model draws initial weights: the random stream the passes continue with stays as it was.
                    using var rng = torch.get_rng_state();
                    using (var bestModel = create())
                    {
                        Inference.ModelLoader.LoadInto(bestModel, outputs.BestCheckpointPath, plan.ModelName);
                        bestModel.to(device);
                        bestTestAccuracy = Evaluate(bestModel, testData, plan, device).Accuracy;
                    }
                    torch.set_rng_state(rng);
                }
                if (plan.Passes.Count > 0 && !options.NoOptimize)
                    report.SetSection("optimized", Optimize(options, model, loop, strategy, outputs, data, device));
                outputs.Finish(report, bestTestAccuracy);
                return 0;
            });
        }

        /// <summary>Runs the declared optimisation passes on the trained model; fine-tuning reuses the epoch loop.</summary>
        private static Optimization.OptimizationReport Optimize(TrainingOptions options, nn.Module<Tensor, Tensor> model, EpochLoop loop,
            ITrainingStrategy strategy, RunOutputs outputs, TrainingData data, Device device)
        {
            var plan = options.Plan;
            var context = new Optimization.OptimizationContext(
                model, plan, device, loop.Primary,
                options.ExportPath ?? Path.Combine(options.CheckpointDirectory, "optimized.bin"),
                outputs.Note,
                FineTune: (pruned, epochs, lr) =>
                {
                    // The pruned model has new parameters (weight_orig, or smaller layers): the strategy starts over
                    // on them (gradient buckets) and a fresh optimiser of the declared kind takes them.
                    var fineTuneOptimizer = CreateOptimizer(plan with { LearningRate = lr }, pruned);
                    strategy.Start(pruned, stepsTaken: 0, fineTuneOptimizer);
                    var fineTuning = loop.With(pruned, fineTuneOptimizer);
                    for (int e = 0; e < epochs; e++)
                        _ = fineTuning.Run(e, epochs, lr, label: "fine-tune")
                            ?? throw Diverged(fineTuning.Divergence, e + 1, outputs.CheckpointPath, new List<EpochMetrics>());
                },
                Evaluate: m => (
                    data.Test is { } test && LossFunctions.HasAccuracy(plan.Loss) ? Evaluate(m, test, plan, device).Accuracy : null,
                    data.Validation.Count > 0 ? Evaluate(m, data.Validation, plan, device).Loss : null),
                Calibration: count => CalibrationBatches(data.Train, plan, device, count));
            var report = Optimization.OptimizationPipeline.Run(context);
            outputs.Note($"optimised: {report.ExportPath} ({report.SizeRatio:P0} of the fp32 size, " +
                         $"{report.SpeedupBatch1:0.00}x at batch 1, {report.Speedup:0.00}x at batch 64" +
                         (report.TestAccuracy is { } a ? $", test accuracy {TrainingProgress.Percent(a)}" : "") + ")" +
                         (loop.Primary ? $"; evaluate, predict and export take it with --model {report.ExportPath}" : ""));
            return report;
        }

        /// <summary>
        /// Static int8's calibration data: the first <paramref name="count"/> training batches of the declared size in the
        /// seeded epoch-0 order, the same on every rank (each batch is freed once the next is asked for).
        /// </summary>
        private static IEnumerable<Tensor> CalibrationBatches(TensorDataset train, TrainingPlan plan, Device device, int count)
        {
            int taken = 0;
            foreach (var (xb, yb) in train.Batches(plan.BatchSize, shuffle: true, plan.Seed, epoch: 0))
            {
                yb.Dispose();
                if (taken++ == count)
                {
                    xb.Dispose();
                    yield break;
                }
                using (xb)
                using (var x = xb.to(device))
                    yield return x;
            }
        }

        /// <summary>
        /// One epoch of training as the loop and fine-tuning run it: this rank's batches, a step each, progress, and
        /// the epoch's metrics summed over all ranks. Returns null when the loss diverged (on any rank).
        /// </summary>
        private sealed class EpochLoop
        {
            private readonly TrainingOptions _options;
            private readonly nn.Module<Tensor, Tensor> _model;
            private readonly ITrainingStrategy _strategy;
            private readonly TrainingData _data;
            private readonly RunOutputs _outputs;
            private readonly Device _device;
            private readonly TrainingStep _step;

            public EpochLoop(TrainingOptions options, nn.Module<Tensor, Tensor> model, OptimizerHelper optimizer, ITrainingStrategy strategy,
                TrainingData data, RunOutputs outputs, Device device, MixedPrecision.ITrainingPrecision? precision = null, bool measure = true)
            {
                (_options, _model, _strategy, _data, _outputs, _device) = (options, model, strategy, data, outputs, device);
                Optimizer = optimizer;
                _measure = measure;
                _step = new TrainingStep(model, optimizer, options.Plan, strategy, precision) { Probe = measure ? Memory : null };
                _precision = precision;
            }

            private readonly MixedPrecision.ITrainingPrecision? _precision;

            private readonly bool _measure;

            /// <summary>What this rank holds at its first steps (the report's <c>memory.measured</c>).</summary>
            public MemoryProbe Memory { get; } = new();

            public OptimizerHelper Optimizer { get; }
            public bool Primary => _strategy.Rank == 0;
            /// <summary>Optimiser steps taken so far over the whole run.</summary>
            public long Step { get; set; }
            public long SamplesSeen { get; private set; }
            /// <summary>Why the last <see cref="Run"/> returned null.</summary>
            public Divergence Divergence { get; private set; }

            /// <summary>The same loop over another model and optimiser (fine-tuning a pruned model), in float32 (the bfloat16 working copy is of the unpruned model), measuring nothing: the report's memory is training's.</summary>
            public EpochLoop With(nn.Module<Tensor, Tensor> model, OptimizerHelper optimizer) =>
                new(_options, model, optimizer, _strategy, _data, _outputs, _device, measure: false);

            public EpochMetrics? Run(int epoch, int epochs, double lr, string label = "epoch", bool perStepSchedule = false)
            {
                var plan = _options.Plan;
                // Gradient accumulation: k micro-batches per optimiser step; an epoch's last group may be shorter.
                int k = Math.Max(1, plan.GradientAccumulation);
                long batches = _strategy.BatchCount(_data.Train, plan.BatchSize);
                long steps = (batches + k - 1) / k;
                long rankSamples = k > 1 ? _strategy.BatchCount(_data.Train, 1) : 0;
                if (perStepSchedule) lr = plan.LearningRateAt(epoch + 1.0 / Math.Max(1, steps));
                foreach (var group in Optimizer.ParamGroups) group.LearningRate = lr;
                bool hasAccuracy = LossFunctions.HasAccuracy(plan.Loss);

                _outputs.BeginEpoch(epoch + 1, epochs, steps);
                _model.train();
                if (_options.Deterministic) DisableDropout(_model);

                var clock = Stopwatch.StartNew();
                double lossSum = 0;
                long correct = 0, seen = 0, targets = 0, stepInEpoch = 0, micro = 0;
                (double Loss, long Correct, long Seen, long Targets) pending = default; // the open accumulation group's figures
                foreach (var (xb, yb) in _strategy.Batches(_data.Train, plan.BatchSize, plan.Seed, epoch))
                {
                    using var scope = torch.NewDisposeScope();
                    // The batch was assembled before this scope opened: it goes with the step, not to the finalizer.
                    scope.Attach(xb);
                    scope.Attach(yb);
                    var x = xb.to(_device);
                    var y = yb.to(_device);
                    long n = x.shape[0];
                    bool first = micro % k == 0, last = micro % k == k - 1 || micro == batches - 1;
                    // Each micro-batch's loss weighs its share of the group's samples: the group's gradient is the
                    // mean loss's over all of them, as one step at the group's whole batch.
                    long groupStart = micro / k * k * plan.BatchSize;
                    double weight = k == 1 ? 1 : (double)n / (Math.Min(groupStart + (long)k * plan.BatchSize, rankSamples) - groupStart);
                    micro++;
                    Memory.Armed = _measure && Step < MemoryProbe.MeasuredSteps;
                    // Per-step schedule: the rate for the step about to run, at its fraction of the epoch.
                    if (perStepSchedule && first && stepInEpoch > 0)
                        foreach (var group in Optimizer.ParamGroups) group.LearningRate = plan.LearningRateAt(epoch + (stepInEpoch + 1.0) / Math.Max(1, steps));
                    var result = Guarded(() => _step.Run(x, y, weight, first, last), _model, x, plan, $"{(label == "epoch" ? "training" : label)} step {Step + 1} ({label} {epoch + 1})");
                    pending = (pending.Loss + result.Loss * n, pending.Correct + result.Correct, pending.Seen + n, pending.Targets + y.numel()); // targets: one per sample, or per position of a language model
                    if (!last) continue;
                    var done = pending;
                    pending = default;
                    if (_strategy.AfterStep(_model, ++Step, result.Loss, result.Applied) is { } diverged)
                    {
                        Divergence = diverged;
                        return null;
                    }
                    if (result.Applied) Memory.AfterStep(_model, Optimizer, _precision);
                    Memory.Armed = false;
                    // Skipped on this rank alone (local SGD): the ranks decide together at the next round.
                    if (!result.Applied) continue;

                    stepInEpoch++;
                    seen += done.Seen;
                    lossSum += done.Loss;
                    correct += done.Correct;
                    targets += done.Targets;

                    double elapsed = clock.Elapsed.TotalSeconds;
                    var eta = TimeSpan.FromSeconds(elapsed / stepInEpoch * ((steps - stepInEpoch) + steps * (epochs - epoch - 1)));
                    _outputs.Step(stepInEpoch, lossSum / seen, hasAccuracy ? (double)correct / targets : double.NaN, seen / Math.Max(elapsed, 1e-9), eta);
                }

                // Local SGD closes its averaging round: validation and the checkpoint see the ranks' common model.
                if (_strategy.EndEpoch(_model) is { } late)
                {
                    Divergence = late;
                    return null;
                }

                // Every rank saw its own share: the epoch's figures are sums over all ranks.
                var totals = new[] { lossSum, correct, seen, targets };
                _strategy.SumAcrossRanks(totals);
                SamplesSeen += (long)totals[2];
                return EpochEnd(_model, _data.Validation, plan, _device, epoch, lr, clock.Elapsed.TotalSeconds, totals);
            }
        }

        /// <summary>The epoch's metrics from the rank-summed training figures and a validation pass.</summary>
        private static EpochMetrics EpochEnd(nn.Module<Tensor, Tensor> model, TensorDataset validation, TrainingPlan plan, Device device,
            int epoch, double lr, double seconds, double[] totals)
        {
            bool hasAccuracy = LossFunctions.HasAccuracy(plan.Loss);
            double seen = Math.Max(1, totals[2]);
            var (valLoss, valAccuracy) = validation.Count > 0 ? Evaluate(model, validation, plan, device) : (double.NaN, double.NaN);
            return new EpochMetrics
            {
                Epoch = epoch + 1,
                TrainLoss = totals[0] / seen,
                TrainAccuracy = hasAccuracy ? totals[1] / Math.Max(1, totals[3]) : double.NaN,
                ValLoss = validation.Count > 0 ? valLoss : null,
                ValAccuracy = validation.Count > 0 && hasAccuracy ? valAccuracy : null,
                LearningRate = lr,
                Seconds = seconds,
                Samples = (long)totals[2],
            };
        }

        /// <summary>Runs a step; a libtorch error becomes one line naming the step and the layer (or the loss) that failed.</summary>
        private static T Guarded<T>(Func<T> run, nn.Module<Tensor, Tensor> model, Tensor x, TrainingPlan plan, string where)
        {
            try
            {
                return run();
            }
            catch (Exception e) when (StepFailure.IsNative(e))
            {
                throw StepFailure.Explain(e, model, x, plan.Loss, where, plan.CustomLoss is null ? null : plan.LossMethod);
            }
        }

        internal static Device ResolveDevice(string device)
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
        public static (double Loss, double Accuracy) Evaluate(nn.Module<Tensor, Tensor> model, TensorDataset data, Loss loss, Device device) =>
            Evaluate(model, data, new TrainingPlan { ModelName = "", SampleShape = Array.Empty<long>(), Loss = loss }, device);

        /// <summary>The same with the plan's loss: its [Loss] method when it has one (<see cref="LossFunctions.Compute(TrainingPlan, Tensor, Tensor)"/>).</summary>
        public static (double Loss, double Accuracy) Evaluate(nn.Module<Tensor, Tensor> model, TensorDataset data, TrainingPlan plan, Device device)
        {
            var loss = plan.Loss;
            model.eval();
            using var noGrad = torch.no_grad();
            double lossSum = 0;
            long correct = 0, seen = 0, targets = 0;
            foreach (var (xb, yb) in data.Batches(1024, shuffle: false, 0, 0))
            {
                using var scope = torch.NewDisposeScope();
                scope.Attach(xb);
                scope.Attach(yb);
                var x = xb.to(device);
                var y = yb.to(device);
                var output = Guarded(() => model.call(x), model, x, plan, "evaluation");
                long n = x.shape[0];
                lossSum += Guarded(() => LossFunctions.Compute(plan, output, y), model, x, plan, "evaluation").item<float>() * n;
                correct += LossFunctions.CountCorrect(loss, output, y);
                seen += n;
                targets += y.numel();
            }
            return (lossSum / Math.Max(1, seen), (double)correct / Math.Max(1, targets));
        }

        private static void DisableDropout(nn.Module model)
        {
            foreach (var m in model.modules())
                if (m is Dropout) m.eval();
        }

        private static TrainingException Diverged(Divergence divergence, int epoch, string checkpointPath, List<EpochMetrics> history) =>
            new($"the loss became {divergence.Loss} at epoch {epoch}, step {divergence.Step}; training stopped. " +
                (history.Count > 0
                    ? $"The last good checkpoint (epoch {history[^1].Epoch}) is kept at {checkpointPath}."
                    : "No epoch of this run had completed, so it wrote no checkpoint.") +
                " Try a lower --lr or gradient clipping.", TrainingHost.Diverged);
    }
}
