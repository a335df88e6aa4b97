using System.IO;
using ModelDsl.Runtime.Optimization;
using ModelDsl.Runtime.Quantization;
using ModelDsl.Runtime.Training;
using TorchSharp.Modules;

namespace ModelDsl.Runtime.Tests.Pipeline
{
    [Model(Input = "B, 8")]
    [Train(Loss.CrossEntropy, Optimizer.SGD, LearningRate = 0.05, Epochs = 2, BatchSize = 16, ValidationFraction = 0.2)]
    [Prune(PruneMethod.L1Unstructured, 0.5, Targets = new[] { nameof(Hidden) }, FineTuneEpochs = 1)]
    [Prune(PruneMethod.Structured, 4, Targets = new[] { nameof(Hidden) })]
    [Quantize(QuantizeMode.DynamicInt8)]
    public partial class PipelineNet
    {
        [Linear(16)] public partial Linear Hidden { get; }
        [ReLU]       public partial ReLU Act { get; }
        [Linear(3)]  public partial Linear Output { get; }
    }

    [Model(Input = "B, 1, 2, 4")]
    [Train(Loss.CrossEntropy, Optimizer.SGD, LearningRate = 0.05, Epochs = 1, BatchSize = 16, ValidationFraction = 0.2)]
    [Prune(PruneMethod.Structured, 2, Targets = new[] { nameof(Conv) }, FineTuneEpochs = 1)]
    public partial class FlattenNet
    {
        [Conv2d(4, 3, Padding = 1)] public partial Conv2d Conv { get; }
        [BatchNorm2d]               public partial BatchNorm2d Norm { get; }
        [ReLU]                      public partial ReLU Act { get; }
        [Flatten]                   public partial Flatten Flat { get; }
        [Linear(3)]                 public partial Linear Output { get; }
    }

    // A quarter of 6 channels is 1.5, which rounds half to even to 2; the cut reaches Output through the norm, the
    // activation, the pooling, the Flatten and the dropout.
    [Model(Input = "B, 1, 4, 4")]
    [Train(Loss.CrossEntropy, Optimizer.SGD, LearningRate = 0.05, Epochs = 1, BatchSize = 16, ValidationFraction = 0.2)]
    [Prune(PruneMethod.Structured, 0.25, Targets = new[] { nameof(Conv) })]
    public partial class PooledNet
    {
        [Conv2d(6, 3, Padding = 1)] public partial Conv2d Conv { get; }
        [BatchNorm2d]               public partial BatchNorm2d Norm { get; }
        [ReLU]                      public partial ReLU Act { get; }
        [MaxPool2d(2)]              public partial MaxPool2d Pool { get; }
        [Flatten]                   public partial Flatten Flat { get; }
        [Dropout(0.1)]              public partial Dropout Drop { get; }
        [Linear(3)]                 public partial Linear Output { get; }
    }

    /// <summary>The declared passes run after training, in order, through the trainer's seam, and report what they did.</summary>
    [Collection(GlobalTorchStateCollection.Name)]
    public sealed class OptimizationPipelineTests : IDisposable
    {
        private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-pipeline-").FullName;

        public void Dispose() => Directory.Delete(_dir, recursive: true);

        private TrainingOptions Options(bool noOptimize = false)
        {
            var data = Path.Combine(_dir, "data.csv");
            var random = new Random(3);
            File.WriteAllLines(data, Enumerable.Range(0, 80).Select(i =>
                string.Join(",", Enumerable.Range(0, 8).Select(_ => random.Next(0, 9))) + "," + (i % 3)));
            return new TrainingOptions
            {
                Plan = PipelineNet.Plan with { Data = data },
                CheckpointDirectory = Path.Combine(_dir, "ckpt"),
                ReportPath = Path.Combine(_dir, "report.json"),
                PlainProgress = true,
                NoOptimize = noOptimize,
            };
        }

        [Fact]
        public void Passes_RunInOrder_AndTheReportMatchesWhatTheCompilerComputed()
        {
            Assert.Equal(0, Trainer.Train(Options(), () => new PipelineNet()));
            var report = TrainingReport.Read(Path.Combine(_dir, "report.json")).GetSection<OptimizationReport>("optimized")!;

            Assert.Equal(new[] { "Prune L1Unstructured 0.5 of Hidden, then 1 fine-tune epoch", "Prune Structured 4 of Hidden", "Quantize DynamicInt8" }, report.Passes);
            // Hidden: 8·16 + 16 = 144 → 12 neurons 108; Output: 16·3 + 3 = 51 → 39.
            Assert.Equal(147, PipelineNet.Plan.ParametersAfterPasses);
            Assert.Equal(PipelineNet.Plan.ParametersAfterPasses, report.ParamCountAfter);
            Assert.Equal(195, report.ParamCountBefore);
            // The unstructured pass zeroed exactly half of Hidden's 128 weights before the structured cut.
            Assert.Equal(0.5, report.LayerSparsity["Hidden"]);
            Assert.Equal(1, report.FineTuneEpochs);
            Assert.True(report.ParamBytesAfter < report.ParamBytesBefore);
            Assert.InRange(report.SizeRatio, 0.01, 0.99);

            // The exported model is the int8 one and loads back as such.
            var exported = Path.Combine(_dir, "ckpt", "optimized.bin");
            Assert.Equal(report.ExportPath, exported);
            Assert.Equal(new FileInfo(exported).Length, report.FileBytesAfter);
        }

        [Fact]
        public void StructuredCutThroughFlatten_ShrinksConvNormAndLinear_AsTheCompilerComputed()
        {
            var pipelineOptions = Options();
            var options = pipelineOptions with { Plan = FlattenNet.Plan with { Data = pipelineOptions.Plan.Data } };
            Assert.Equal(0, Trainer.Train(options, () => new FlattenNet()));
            var report = TrainingReport.Read(Path.Combine(_dir, "report.json")).GetSection<OptimizationReport>("optimized")!;
            // Conv 4·9 + 4 = 40 → 20, Norm 8 → 4, Output 32·3 + 3 = 99 → 16·3 + 3 = 51.
            Assert.Equal(147, report.ParamCountBefore);
            Assert.Equal(75, FlattenNet.Plan.ParametersAfterPasses);
            Assert.Equal(FlattenNet.Plan.ParametersAfterPasses, report.ParamCountAfter);
            Assert.NotNull(report.ValLoss);
        }

        [Fact]
        public void StructuredCutThroughNormActivationPoolingFlattenAndDropout_CountsAsTheCompilerComputed()
        {
            var pipelineOptions = Options();
            var data = Path.Combine(_dir, "pooled.csv");
            var random = new Random(5);
            File.WriteAllLines(data, Enumerable.Range(0, 80).Select(i =>
                string.Join(",", Enumerable.Range(0, 16).Select(_ => random.Next(0, 9))) + "," + (i % 3)));
            var options = pipelineOptions with { Plan = PooledNet.Plan with { Data = data } };
            Assert.Equal(0, Trainer.Train(options, () => new PooledNet()));
            var report = TrainingReport.Read(Path.Combine(_dir, "report.json")).GetSection<OptimizationReport>("optimized")!;
            // Conv 6·9 + 6 = 60 → 4 channels: 40, Norm 12 → 8, Output 6·2·2·3 + 3 = 75 → 16·3 + 3 = 51.
            Assert.Equal(147, report.ParamCountBefore);
            Assert.Equal(99, PooledNet.Plan.ParametersAfterPasses);
            Assert.Equal(PooledNet.Plan.ParametersAfterPasses, report.ParamCountAfter);

            var host = (ILayerHost)new PooledNet();
            Assert.Equal(("Norm", "Output"), OptimizationPipeline.Downstream(host, "Conv"));
        }

        [Fact]
        public void NoOptimize_SkipsThePasses()
        {
            Assert.Equal(0, Trainer.Train(Options(noOptimize: true), () => new PipelineNet()));
            Assert.Null(TrainingReport.Read(Path.Combine(_dir, "report.json")).GetSection<OptimizationReport>("optimized"));
            Assert.False(File.Exists(Path.Combine(_dir, "ckpt", "optimized.bin")));
        }
    }
}
