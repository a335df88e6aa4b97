using System.IO;
using ModelDsl.Runtime.Optimization;
using ModelDsl.Runtime.Quantization;
using ModelDsl.Runtime.Training;
using ModelDsl.Shapes;
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

    // BatchNorm folding: a Conv2d without bias gains one; a Linear's BatchNorm1d folds too; the plan is what makes the
    // pipeline (and the loader) fold.
    [Model(Input = "B, 2, 4, 4")]
    [Train(Loss.CrossEntropy, Optimizer.SGD, LearningRate = 0.05, Epochs = 1, BatchSize = 16, ValidationFraction = 0.2)]
    [Prune(PruneMethod.Structured, 1, Targets = new[] { nameof(Conv) })]
    public partial class FoldNet
    {
        [Conv2d(3, 3, Padding = 1, Bias = false)] public partial Conv2d Conv { get; }
        [BatchNorm2d]                             public partial BatchNorm2d Norm { get; }
        [ReLU]                                    public partial ReLU Act { get; }
        [Flatten]                                 public partial Flatten Flat { get; }
        [Linear(5)]                               public partial Linear Hidden { get; }
        [BatchNorm1d]                             public partial BatchNorm1d Norm1d { get; }
        [Linear(3)]                               public partial Linear Output { get; }
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

            // The unstructured pass keeps every shape; the structured cut and quantisation are measured.
            Assert.Equal(new[] { "Prune Structured 4 of Hidden", "Quantize DynamicInt8" }, report.PassLatencies.Select(p => p.Pass));
            Assert.All(report.PassLatencies, p => Assert.True(p.LatencyBatch1 > 0 && p.LatencyBatch64 > 0 && p.SpeedupBatch1 > 0 && p.SpeedupBatch64 > 0));
            Assert.Equal(report.LatencyBatch1Before / report.LatencyBatch1After, report.SpeedupBatch1, 9);
            Assert.Empty(report.FoldedBatchNorms);
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
            var group = OptimizationPipeline.Group(host, "Conv");
            Assert.Equal(new[] { "Norm" }, group.Norms.Select(n => n.Layer));
            Assert.Equal(new[] { new GroupMember("Output", 0, 4) }, group.Consumers);
        }

        [Fact]
        public void SlowerPass_GivesOneWarningNamingThePassAndTheRatios()
        {
            var pass = new QuantizePass(QuantizeMode.DynamicInt8);
            Assert.Null(OptimizationPipeline.SlowdownWarning(pass, 1.0, 1.05, 10, 9));
            Assert.Equal("the pass 'Quantize DynamicInt8' made the model slower: 0.50x at batch 1 (0.1 -> 0.2 ms), 1.25x at batch 64 (10 -> 8 ms)",
                OptimizationPipeline.SlowdownWarning(pass, 0.1, 0.2, 10, 8));
            Assert.NotNull(OptimizationPipeline.SlowdownWarning(pass, 1, 1, 10, 12));
        }

        [Fact]
        public void BatchNorms_AreFoldedIntoTheLayerBefore_AndOptimizedBinLoadsBack()
        {
            var pipelineOptions = Options();
            var data = Path.Combine(_dir, "fold.csv");
            var random = new Random(7);
            File.WriteAllLines(data, Enumerable.Range(0, 80).Select(i =>
                string.Join(",", Enumerable.Range(0, 32).Select(_ => random.Next(0, 9))) + "," + (i % 3)));
            var options = pipelineOptions with { Plan = FoldNet.Plan with { Data = data } };
            Assert.Equal(0, Trainer.Train(options, () => new FoldNet()));
            var report = TrainingReport.Read(Path.Combine(_dir, "report.json")).GetSection<OptimizationReport>("optimized")!;
            Assert.Equal(new[] { "Norm", "Norm1d" }, report.FoldedBatchNorms);
            // The counts are the plan's (the compiler's), before the fold.
            Assert.Equal(FoldNet.Plan.ParametersAfterPasses, report.ParamCountAfter);

            using var loaded = new FoldNet();
            Inference.ModelLoader.LoadInto(loaded, report.ExportPath, FoldNet.Plan.ModelName);
            Assert.IsType<FoldedBatchNorm>(loaded.GetLayer(nameof(FoldNet.Norm)));
            Assert.IsType<FoldedBatchNorm>(loaded.GetLayer(nameof(FoldNet.Norm1d)));
            var conv = Assert.IsType<Conv2d>(loaded.GetLayer(nameof(FoldNet.Conv)));
            Assert.Equal(2, conv.out_channels);
            Assert.NotNull(conv.bias);
        }

        [Fact]
        public void Folding_KeepsTheEvalOutputs()
        {
            TorchSharp.torch.manual_seed(5);
            using var model = new FoldNet();
            using (TorchSharp.torch.no_grad())
            {
                foreach (var (name, buffer) in model.named_buffers())
                {
                    if (name.EndsWith("running_mean")) buffer.copy_(TorchSharp.torch.randn_like(buffer));
                    if (name.EndsWith("running_var")) buffer.copy_(TorchSharp.torch.rand_like(buffer) + 0.5);
                }
            }
            model.eval();
            using var x = TorchSharp.torch.randn(4, 2, 4, 4);
            using var before = model.call(x).detach();
            Assert.Equal(new[] { "Norm", "Norm1d" }, OptimizationPipeline.FoldBatchNorms(model, ""));
            using var after = model.call(x).detach();
            Assert.True(after.allclose(before, rtol: 1e-5, atol: 1e-5), "the folded model computes what the unfolded one did");
            Assert.Null(model.named_modules().FirstOrDefault(m => m.module is BatchNorm2d or BatchNorm1d).module);

            // Saved and loaded back through the loader (the fold gave Conv a bias its declaration does not have).
            var path = Path.Combine(_dir, "folded.bin");
            model.save(path);
            using var loaded = new FoldNet();
            Inference.ModelLoader.LoadInto(loaded, path, FoldNet.Plan.ModelName);
            loaded.eval();
            using var again = loaded.call(x).detach();
            Assert.True(again.allclose(after, rtol: 0, atol: 0), "the loaded folded model computes exactly what was saved");
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
