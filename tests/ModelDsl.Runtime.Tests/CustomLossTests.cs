using System.IO;
using ModelDsl.Runtime.Inference;
using ModelDsl.Runtime.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests.CustomLoss
{
    /// <summary>Declared MSE (float targets), trained with a [Loss] method: the mean absolute error.</summary>
    [Model(Input = "B, 2")]
    [Train(ModelDsl.Loss.MSE, Optimizer.SGD, LearningRate = 0.5, Epochs = 1, BatchSize = 16, ValidationFraction = 0, Seed = 5)]
    public partial class L1Regressor
    {
        [Linear(1)] public partial Linear Out { get; }

        [Loss]
        static Tensor MeanAbsolute(Tensor output, Tensor target) => nn.functional.l1_loss(output, target.reshape(output.shape));
    }

    /// <summary>A [Loss] method that forgets to reduce: one value per sample instead of a scalar.</summary>
    [Model(Input = "B, 2")]
    [Train(ModelDsl.Loss.MSE, Optimizer.SGD, Epochs = 1, BatchSize = 16, ValidationFraction = 0)]
    public partial class Unreduced
    {
        [Linear(1)] public partial Linear Out { get; }

        [Loss]
        static Tensor PerSample(Tensor output, Tensor target) => (output - target.reshape(output.shape)).abs();
    }

    /// <summary>A [Loss] method that libtorch rejects: (16, 1) and (4, 4) do not broadcast.</summary>
    [Model(Input = "B, 2")]
    [Train(ModelDsl.Loss.MSE, Optimizer.SGD, Epochs = 1, BatchSize = 16, ValidationFraction = 0)]
    public partial class Mismatched
    {
        [Linear(1)] public partial Linear Out { get; }

        [Loss]
        static Tensor Broadcast(Tensor output, Tensor target) => (output - target.reshape(4, 4)).abs().mean();
    }

    /// <summary>The trainer uses a model's [Loss] method for its step, its reported losses and evaluate.</summary>
    [Collection(GlobalTorchStateCollection.Name)]
    public sealed class CustomLossTests : IDisposable
    {
        private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-loss-").FullName;

        public void Dispose() => Directory.Delete(_dir, recursive: true);

        /// <summary>16 rows of two features and a target with outliers: L1 and MSE pull the weights apart.</summary>
        private string Data()
        {
            var path = Path.Combine(_dir, "data.csv");
            var random = new Random(11);
            File.WriteAllLines(path, Enumerable.Range(0, 16).Select(i =>
            {
                double a = random.Next(-20, 21) / 10.0, b = random.Next(-20, 21) / 10.0;
                double y = 2 * a - b + (i % 5 == 0 ? 30 : 0);
                return FormattableString.Invariant($"{a},{b},{y}");
            }));
            return path;
        }

        private TrainingOptions Options(TrainingPlan plan) => new()
        {
            Plan = plan with { Data = Data() },
            CheckpointDirectory = Path.Combine(_dir, "ckpt"),
            ReportPath = Path.Combine(_dir, "report.json"),
            PlainProgress = true,
            Deterministic = true,
        };

        /// <summary>One full-batch SGD step from the seeded initial weights, with <paramref name="loss"/>: (weights, loss before the step).</summary>
        private static (float[] Weight, float Bias, double Loss) OneStep(string data, Func<Tensor, Tensor, Tensor> loss)
        {
            var rows = File.ReadAllLines(data).Select(l => l.Split(',').Select(v => float.Parse(v, System.Globalization.CultureInfo.InvariantCulture)).ToArray()).ToArray();
            using var scope = NewDisposeScope();
            var x = tensor(rows.SelectMany(r => r.Take(2)).ToArray(), new long[] { rows.Length, 2 });
            var y = tensor(rows.Select(r => r[2]).ToArray());
            manual_seed(L1Regressor.Plan.Seed);
            using var model = new L1Regressor();
            var value = loss(model.call(x), y);
            value.backward();
            using (no_grad())
                foreach (var p in model.parameters()) p.sub_(p.grad! * L1Regressor.Plan.LearningRate);
            return (model.Out.weight!.data<float>().ToArray(), model.Out.bias!.data<float>().ToArray()[0], value.item<float>());
        }

        private (float[] Weight, float Bias) Trained()
        {
            using var model = new L1Regressor();
            var checkpoint = Path.Combine(_dir, "ckpt", Checkpoint.FileName);
            var state = Checkpoint.ReadState(checkpoint);
            Checkpoint.Load(checkpoint, model, Trainer.CreateOptimizer(L1Regressor.Plan, model), state.ModelName, state.PlanFingerprint);
            return (model.Out.weight!.data<float>().ToArray(), model.Out.bias!.data<float>().ToArray()[0]);
        }

        [Fact]
        public void TrainingStep_FollowsTheLossMethod_NotTheDeclaredLoss()
        {
            var options = Options(L1Regressor.Plan);
            Assert.Equal(0, Trainer.Train(options, () => new L1Regressor()));

            var l1 = OneStep(options.Plan.Data, (o, t) => nn.functional.l1_loss(o, t.reshape(o.shape)));
            var mse = OneStep(options.Plan.Data, (o, t) => nn.functional.mse_loss(o, t.reshape(o.shape)));
            var (weight, bias) = Trained();
            // The one step of the run is the L1 step (summation order aside) ...
            Assert.Equal(l1.Bias, bias, 5);
            for (int i = 0; i < weight.Length; i++) Assert.Equal(l1.Weight[i], weight[i], 5);
            // ... which is far from the step the declared MSE would have taken.
            Assert.True(Math.Abs(mse.Bias - bias) > 1, $"MSE bias {mse.Bias} vs trained {bias}");

            // The reported training loss is the method's value on the batch, not MSE's.
            var report = TrainingReport.Read(options.ReportPath!);
            Assert.Equal(l1.Loss, report.FinalTrainLoss, 4);
            Assert.True(Math.Abs(mse.Loss - report.FinalTrainLoss) > 10, $"MSE {mse.Loss} vs reported {report.FinalTrainLoss}");
            // Regression targets: no accuracy, as with the declared MSE.
            Assert.True(double.IsNaN(report.History[0].TrainAccuracy));
        }

        [Fact]
        public void Evaluate_ReportsTheLossMethod()
        {
            var options = Options(L1Regressor.Plan);
            Assert.Equal(0, Trainer.Train(options, () => new L1Regressor()));
            var result = EvaluateCommand.Evaluate(L1Regressor.Plan, () => new L1Regressor(), Path.Combine(_dir, "ckpt", Checkpoint.FileName), options.Plan.Data, 64);

            var (weight, bias) = Trained();
            var rows = File.ReadAllLines(options.Plan.Data).Select(l => l.Split(',').Select(v => double.Parse(v, System.Globalization.CultureInfo.InvariantCulture)).ToArray()).ToArray();
            double expected = rows.Average(r => Math.Abs(weight[0] * r[0] + weight[1] * r[1] + bias - r[2]));
            Assert.Equal("MeanAbsolute ([Loss] method)", result.LossFunction);
            Assert.Equal(expected, result.Loss, 4);
        }

        [Fact]
        public void LossMethodThatDoesNotReduce_IsOneClearError()
        {
            var e = Assert.Throws<TrainingException>(() => Trainer.Train(Options(Unreduced.Plan), () => new Unreduced()));
            Assert.Equal(TrainingHost.UsageError, e.ExitCode);
            Assert.StartsWith("the [Loss] method PerSample returned a tensor of shape [16, 1]; it must return the batch's loss as a scalar", e.Message);
        }

        [Fact]
        public void LossMethodThatLibtorchRejects_IsNamedInTheErrorLine()
        {
            var e = Assert.Throws<TrainingException>(() => Trainer.Train(Options(Mismatched.Plan), () => new Mismatched()));
            Assert.StartsWith("training step 1 (epoch 1) failed in the [Loss] method Broadcast: ", e.Message);
            Assert.Contains("check its tensor operations against their shapes", e.Message);
        }

        [Fact]
        public void Fingerprint_NamesTheLossMethod_OnlyWhenThereIsOne()
        {
            Assert.Contains("\"LossMethod\":\"MeanAbsolute\"", L1Regressor.Plan.Fingerprint());
            Assert.DoesNotContain("LossMethod", (L1Regressor.Plan with { LossMethod = "", CustomLoss = null }).Fingerprint());
        }
    }
}
