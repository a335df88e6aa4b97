using System.Collections.Generic;
using System.IO;
using ModelDsl.Runtime.Training;
using TorchSharp.Modules;

namespace ModelDsl.Runtime.Tests.Accumulation
{
    /// <summary>A small classifier whose plan declares gradient accumulation (the tests change the rest per case).</summary>
    [Model(Input = "B, 6")]
    [Train(Loss.CrossEntropy, Optimizer.SGD, LearningRate = 0.1, Epochs = 2, BatchSize = 8, ValidationFraction = 0, GradientAccumulation = 4)]
    public partial class AccumulationNet
    {
        [Linear(16)] public partial Linear Hidden { get; }
        [Tanh]       public partial Tanh Act { get; }
        [Linear(3)]  public partial Linear Output { get; }
    }

    /// <summary>
    /// Gradient accumulation in one process, through the trainer: k micro-batches of b per optimiser step take the
    /// steps of one process at batch k·b, the epoch's last, shorter group included (it steps with what it holds).
    /// </summary>
    [Collection(GlobalTorchStateCollection.Name)]
    public sealed class GradientAccumulationTests : IDisposable
    {
        private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-accumulation-").FullName;

        public void Dispose()
        {
            try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        }

        /// <summary>Rows of 6 features and a class; 116 rows = 3 groups of 32 and a last group of 8 + 8 + 4.</summary>
        private string Data(int rows)
        {
            var path = Path.Combine(_dir, $"data{rows}.csv");
            var random = new Random(11);
            File.WriteAllLines(path, Enumerable.Range(0, rows).Select(i =>
                string.Join(",", Enumerable.Range(0, 6).Select(_ => (random.NextDouble() * 2 - 1).ToString("0.###", System.Globalization.CultureInfo.InvariantCulture))) + "," + (i % 3)));
            return path;
        }

        private (TrainingReport Report, Dictionary<string, float[]> Weights) Train(TrainingPlan plan, string name)
        {
            var options = new TrainingOptions
            {
                Plan = plan,
                CheckpointDirectory = Path.Combine(_dir, name),
                ReportPath = Path.Combine(_dir, name + ".json"),
                PlainProgress = true,
                Deterministic = true,
            };
            Assert.Equal(0, Trainer.Train(options, () => new AccumulationNet()));
            return (TrainingReport.Read(options.ReportPath), Weights(Path.Combine(options.CheckpointDirectory, Checkpoint.FileName)));
        }

        [Fact]
        public void DeclaredAccumulation_ReachesTheGeneratedPlan()
        {
            Assert.Equal(4, AccumulationNet.Plan.GradientAccumulation);
            Assert.Equal(8, AccumulationNet.Plan.BatchSize);
        }

        [Theory]
        [InlineData(Optimizer.SGD, 0.9, 128)] // SGD with momentum; every group whole
        [InlineData(Optimizer.Adam, 0.0, 128)]
        [InlineData(Optimizer.SGD, 0.9, 116)] // the epoch's last group: 8 + 8 + 4 samples
        [InlineData(Optimizer.Adam, 0.0, 116)]
        public void FourMicroBatches_EqualOneStepAtFourTimesTheBatch(Optimizer optimizer, double momentum, int rows)
        {
            var plan = AccumulationNet.Plan with { Data = Data(rows), Optimizer = optimizer, Momentum = momentum, LearningRate = optimizer == Optimizer.Adam ? 0.01 : 0.1 };
            var (accumulated, a) = Train(plan with { BatchSize = 8, GradientAccumulation = 4 }, "accumulated");
            var (whole, b) = Train(plan with { BatchSize = 32, GradientAccumulation = 1 }, "whole");
            var (plain, c) = Train(plan with { BatchSize = 8, GradientAccumulation = 1 }, "plain");

            // 4 optimiser steps an epoch (the last group partial at 116 rows), 2 epochs; the report counts samples per step.
            Assert.Equal(8, accumulated.Steps);
            Assert.Equal(whole.Steps, accumulated.Steps);
            Assert.Equal(32, accumulated.GlobalBatchSize);
            Assert.Equal(2 * ((rows + 7) / 8), plain.Steps);
            // The epoch's loss is the mean over its samples whichever way they were grouped.
            for (int e = 0; e < 2; e++)
                Assert.True(Math.Abs(whole.History[e].TrainLoss - accumulated.History[e].TrainLoss) <= 1e-6 * whole.History[e].TrainLoss,
                    $"epoch {e + 1} train loss {accumulated.History[e].TrainLoss} vs {whole.History[e].TrainLoss}");
            foreach (var (name, expected) in b)
            {
                double relative = RelativeDifference(expected, a[name]);
                Assert.True(relative <= 1e-6, $"{name}: relative difference {relative:E2} against batch 32");
            }
            // Without accumulation, batch 8 takes four times the steps: a different trajectory.
            Assert.True(b.Max(p => RelativeDifference(p.Value, c[p.Key])) > 1e-3);
        }

        [Fact]
        public void EveryMicroBatchAGroupOfItsOwn_IsThePlainStep()
        {
            // k larger than the epoch's batches: one (partial) group per epoch, i.e. one step at the whole epoch.
            var plan = AccumulationNet.Plan with { Data = Data(40), Optimizer = Optimizer.SGD, Momentum = 0.9 };
            var (accumulated, a) = Train(plan with { BatchSize = 8, GradientAccumulation = 16 }, "accumulated");
            var (whole, b) = Train(plan with { BatchSize = 40, GradientAccumulation = 1 }, "whole");
            Assert.Equal(2, accumulated.Steps);
            Assert.Equal(2, whole.Steps);
            foreach (var (name, expected) in b)
                Assert.True(RelativeDifference(expected, a[name]) <= 1e-6, name);
        }

        [Fact]
        public void ResumeAfterAnEpoch_ContinuesTheAccumulatedRun()
        {
            var plan = AccumulationNet.Plan with { Data = Data(116), Optimizer = Optimizer.SGD, Momentum = 0.9 };
            var (full, a) = Train(plan, "run");
            Directory.Delete(Path.Combine(_dir, "run"), recursive: true);
            Train(plan with { Epochs = 1 }, "run");
            var options = new TrainingOptions
            {
                Plan = plan, CheckpointDirectory = Path.Combine(_dir, "run"), ReportPath = Path.Combine(_dir, "resumed.json"),
                PlainProgress = true, Deterministic = true, Resume = true,
            };
            Assert.Equal(0, Trainer.Train(options, () => new AccumulationNet()));
            var resumed = TrainingReport.Read(options.ReportPath);
            Assert.Equal(full.Steps, resumed.Steps); // the checkpoint counts optimiser steps
            var b = Weights(Path.Combine(_dir, "run", Checkpoint.FileName));
            foreach (var (name, expected) in a)
                Assert.True(expected.SequenceEqual(b[name]), name);

            // A checkpoint of the accumulated run does not resume at another setting: it would take other steps.
            var other = options with { Plan = plan with { GradientAccumulation = 2 }, ReportPath = null };
            var e = Assert.Throws<CheckpointException>(() => Trainer.Train(other, () => new AccumulationNet()));
            Assert.Contains("GradientAccumulation", e.Message);
        }

        [Fact]
        public void NonFiniteLossInAnEarlierMicroBatch_SkipsTheGroupsStep_AndReportsThatLoss()
        {
            using var model = TorchSharp.torch.nn.Linear(4, 2);
            var plan = new TrainingPlan { ModelName = "M", SampleShape = new long[] { 4 }, Loss = Loss.MSE, Optimizer = Optimizer.SGD, LearningRate = 0.1 };
            using var optimizer = Trainer.CreateOptimizer(plan, model);
            var step = new TrainingStep(model, optimizer, plan);
            var before = model.weight!.detach().clone();
            using var scope = TorchSharp.torch.NewDisposeScope();
            var y = TorchSharp.torch.zeros(2, 2);
            var first = step.Run(TorchSharp.torch.full(2, 4, float.NaN), y, 0.5, first: true, last: false);
            Assert.False(first.Applied);
            var last = step.Run(TorchSharp.torch.ones(2, 4), y, 0.5, first: false, last: true);
            Assert.False(last.Applied);
            Assert.True(double.IsNaN(last.Loss)); // the group's non-finite loss, not the last micro-batch's finite one
            Assert.True(before.eq(model.weight!.detach()).all().item<bool>());

            // The next group starts from zeroed gradients and steps.
            var next = step.Run(TorchSharp.torch.ones(2, 4), y, 1, first: true, last: true);
            Assert.True(next.Applied);
            Assert.False(before.eq(model.weight!.detach()).all().item<bool>());
            Assert.True(model.weight!.isfinite().all().item<bool>());
        }

        private static Dictionary<string, float[]> Weights(string path)
        {
            using var model = new AccumulationNet();
            Inference.ModelLoader.LoadInto(model, path, nameof(AccumulationNet));
            return model.named_parameters().ToDictionary(p => p.name, p => p.parameter.data<float>().ToArray());
        }

        private static double RelativeDifference(float[] expected, float[] actual)
        {
            double norm = Math.Sqrt(expected.Sum(v => (double)v * v));
            double diff = Math.Sqrt(expected.Zip(actual, (x, y) => ((double)x - y) * ((double)x - y)).Sum());
            return diff / Math.Max(norm, 1e-12);
        }
    }

    /// <summary>
    /// The Digits sample's generated trainer with <c>--grad-accum</c> at world size 2 under real Open MPI (the trainer
    /// starts mpirun itself) against one process at the whole batch: 2 ranks × 2 micro-batches × 16 = 64.
    /// </summary>
    [Trait("Category", "EndToEnd")]
    public sealed class GradientAccumulationEndToEndTests : IDisposable
    {
        private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-accumulation-ddp-").FullName;

        public void Dispose()
        {
            try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        }

        [Fact]
        public void MlpAtWorldSizeTwo_WithTwoMicroBatches_EqualsOneProcessWithTheWholeBatch()
        {
            // 1,280 rows: 20 batches of 64, nothing padded by the sampler.
            var data = Path.Combine(_dir, "even.csv");
            File.WriteAllLines(data, File.ReadLines(Path.Combine(DigitsProgram.RepoRoot(), "samples", "Digits", "data", "optdigits.tra")).Take(1280));
            string[] common = { "mlp", "--data", data, "--test-data", "", "--epochs", "2", "--deterministic", "--threads", "1", "--plain" };
            var single = DigitsProgram.Run(_dir, common.Concat(new[] { "--batch-size", "64", "--checkpoint-dir", "one", "--report", "one.json" }).ToArray());
            Assert.True(single.ExitCode == 0, single.ToString());
            var accumulated = DigitsProgram.Run(_dir, common.Concat(new[] { "--batch-size", "16", "--grad-accum", "2", "--world-size", "2", "--checkpoint-dir", "two", "--report", "two.json" }).ToArray());
            Assert.True(accumulated.ExitCode == 0, accumulated.ToString());

            var one = TrainingReport.Read(Path.Combine(_dir, "one.json"));
            var two = TrainingReport.Read(Path.Combine(_dir, "two.json"));
            Assert.Equal(64, two.GlobalBatchSize);
            Assert.Equal(one.Steps, two.Steps);
            Assert.Equal(40, two.Steps);
            var a = DigitsProgram.Weights<Digits.DigitsMlp>(Path.Combine(_dir, "one", Checkpoint.FileName));
            var b = DigitsProgram.Weights<Digits.DigitsMlp>(Path.Combine(_dir, "two", Checkpoint.FileName));
            foreach (var (name, expected) in a)
            {
                double norm = Math.Sqrt(expected.Sum(v => (double)v * v));
                double diff = Math.Sqrt(expected.Zip(b[name], (x, y) => ((double)x - y) * ((double)x - y)).Sum());
                // 40 steps of float32 sums in another order, as DataParallelEndToEndTests allows DDP itself.
                Assert.True(diff / norm <= 1e-5, $"{name}: relative difference {diff / norm:E2}");
            }
        }
    }
}
