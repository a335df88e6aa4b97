using System.IO;
using ModelDsl.Runtime.Optimization;
using ModelDsl.Runtime.Quantization;
using ModelDsl.Runtime.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests.HandWritten
{
#pragma warning disable MD0013 // the residual connection is the point of these models
    /// <summary>
    /// A residual block with the whole plan a user declares: pruning with fine-tuning, then int8. The Linear layers run
    /// through their slots (GetLayer), so the forward runs the int8 layers the pass puts there; reading them through the
    /// typed properties is MD0016 at compile time (ForwardDiagnosticTests).
    /// </summary>
    [Model(Input = "B, 8")]
    [Train(Loss.CrossEntropy, Optimizer.SGD, LearningRate = 0.05, Epochs = 2, BatchSize = 16, ValidationFraction = 0.2)]
    [Prune(PruneMethod.L1Unstructured, 0.5, Targets = new[] { nameof(Hidden) }, FineTuneEpochs = 2)]
    [Quantize(QuantizeMode.DynamicInt8)]
    public partial class ResidualNet
    {
        [Linear(8, 8)] public partial Linear Hidden { get; }
        [ReLU]         public partial ReLU Act { get; }
        [Linear(8, 3)] public partial Linear Out { get; }

        public override Tensor forward(Tensor x) => GetLayer(nameof(Out)).call(x + Act.call(GetLayer(nameof(Hidden)).call(x)));
    }

#pragma warning disable MD0017 // the run-time failure MD0017 warns about is what the test checks
    /// <summary>The MD0013 example as users wrote it: layers called through .forward, which skips pruning's hook.</summary>
    [Model(Input = "B, 8")]
    [Train(Loss.CrossEntropy, Optimizer.SGD, LearningRate = 0.05, Epochs = 1, BatchSize = 16, ValidationFraction = 0.2)]
    [Prune(PruneMethod.L1Unstructured, 0.5, Targets = new[] { nameof(Hidden) }, FineTuneEpochs = 2)]
    public partial class ForwardCallingNet
    {
        [Linear(8, 8)] public partial Linear Hidden { get; }
        [ReLU]         public partial ReLU Act { get; }
        [Linear(8, 3)] public partial Linear Out { get; }

        public override Tensor forward(Tensor x) => Out.call(x + Act.forward(Hidden.forward(x)));
    }
#pragma warning restore MD0017

    /// <summary>
    /// The forward reads its Linear through the typed property inside a helper, which the compiler's check (MD0016,
    /// the forward's own body) does not follow: the run-time path after [Quantize].
    /// </summary>
    [Model(Input = "B, 8")]
    [Train(Loss.CrossEntropy, Optimizer.SGD, LearningRate = 0.05, Epochs = 1, BatchSize = 16, ValidationFraction = 0.2)]
    [Quantize(QuantizeMode.DynamicInt8)]
    public partial class HelperNet
    {
        [Linear(8, 8)] public partial Linear Inner { get; }

        public override Tensor forward(Tensor x) => x + Apply(x);

        private Tensor Apply(Tensor x) => Inner.call(x);
    }
#pragma warning restore MD0013

    /// <summary>Optimisation passes on models with a hand-written forward, end to end through the trainer.</summary>
    [Collection(GlobalTorchStateCollection.Name)]
    public sealed class HandWrittenForwardPassTests : IDisposable
    {
        private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-handwritten-").FullName;

        public void Dispose() => Directory.Delete(_dir, recursive: true);

        private TrainingOptions Options(TrainingPlan plan)
        {
            var data = Path.Combine(_dir, "data.csv");
            var random = new Random(5);
            File.WriteAllLines(data, Enumerable.Range(0, 80).Select(i =>
                string.Join(",", Enumerable.Range(0, 8).Select(_ => random.Next(0, 9))) + "," + (i % 3)));
            return new TrainingOptions
            {
                Plan = plan with { Data = data },
                CheckpointDirectory = Path.Combine(_dir, "ckpt"),
                ReportPath = Path.Combine(_dir, "report.json"),
                PlainProgress = true,
            };
        }

        [Fact]
        public void ResidualForwardThroughSlots_RunsThePruneFineTuneQuantizePlan()
        {
            ResidualNet? trained = null;
            Assert.Equal(0, Trainer.Train(Options(ResidualNet.Plan), () => trained = new ResidualNet()));
            var report = TrainingReport.Read(Path.Combine(_dir, "report.json")).GetSection<OptimizationReport>("optimized")!;

            Assert.Equal(new[] { "Prune L1Unstructured 0.5 of Hidden, then 2 fine-tune epochs", "Quantize DynamicInt8" }, report.Passes);
            Assert.Equal(2, report.FineTuneEpochs);
            Assert.Equal(0.5, report.LayerSparsity["Hidden"]);

            // The trained model's slots hold the int8 layers, and its hand-written forward ran them: the validation
            // loss after the passes is measured through it. (The trainer disposes the model's tensors when it ends.)
            Assert.IsType<DynamicQuantizedLinear>(trained!.GetLayer(nameof(ResidualNet.Hidden)));
            Assert.IsType<DynamicQuantizedLinear>(trained.GetLayer(nameof(ResidualNet.Out)));
            Assert.True(double.IsFinite(report.ValLoss!.Value));
            Assert.True(File.Exists(Path.Combine(_dir, "ckpt", "optimized.bin")));
        }

        [Fact]
        public void PrunedLayerCalledThroughForward_FailsNamingTheLayerAndDotForward_NotTheLoss()
        {
            var e = Assert.Throws<TrainingException>(() => Trainer.Train(Options(ForwardCallingNet.Plan), () => new ForwardCallingNet()));
            Assert.Equal(TrainingHost.UsageError, e.ExitCode);
            Assert.Contains("the pruned layer 'Hidden' ran through .forward(x), which skips the pruning hook", e.Message);
            Assert.Contains("call layers with .call(x)", e.Message);
            Assert.DoesNotContain("labels", e.Message);
            Assert.DoesNotContain("\n", e.Message);
        }

        [Fact]
        public void QuantizeReplacingALinearThatAHelperReadsTyped_IsOneActionableLine()
        {
            var e = Assert.Throws<TrainingException>(() => Trainer.Train(Options(HelperNet.Plan), () => new HelperNet()));
            Assert.Equal(TrainingHost.UsageError, e.ExitCode);
            Assert.Contains("'Inner' now holds a DynamicQuantizedLinear", e.Message);
            Assert.Contains("GetLayer(nameof(Inner)).call(x)", e.Message);
            Assert.IsType<LayerReplacedException>(e.InnerException);
        }
    }
}
