using System.IO;
using ModelDsl.Runtime.Optimization;
using ModelDsl.Runtime.Quantization;
using ModelDsl.Runtime.Tests.Oracle;
using ModelDsl.Runtime.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests.Recurrent
{
    /// <summary>Which of three frequencies a noisy sine wave of random phase and amplitude has, from its 16 samples.</summary>
    [Model(Input = "B, 16, 1")]
    [Train(Loss.CrossEntropy, Optimizer.Adam, LearningRate = 1e-2, Epochs = 8, BatchSize = 32, Seed = 1, ValidationFraction = 0.2)]
    [Quantize(QuantizeMode.DynamicInt8)]
    public partial class WaveClassifier
    {
        [LSTM(16)]  public partial LSTM Rnn { get; }
        [Flatten]   public partial Flatten Flat { get; }
        [Linear(3)] public partial Linear Head { get; }
    }

    /// <summary>
    /// A generated LSTM model trained by the generated trainer on a sequence task, then quantised by its declared
    /// [Quantize] pass; and Quantize.Dynamic over generated models with recurrent layers.
    /// </summary>
    [Collection(GlobalTorchStateCollection.Name)]
    public sealed class RecurrentModelTests : IDisposable
    {
        private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-rnn-").FullName;

        public void Dispose() => Directory.Delete(_dir, recursive: true);

        private static void WriteWaves(string path, int rows, int seed)
        {
            var random = new Random(seed);
            File.WriteAllLines(path, Enumerable.Range(0, rows).Select(i =>
            {
                int label = i % 3;
                double cycles = label + 1, phase = random.NextDouble() * 2 * Math.PI, amplitude = 0.5 + random.NextDouble();
                var samples = Enumerable.Range(0, 16).Select(t =>
                    amplitude * Math.Sin(2 * Math.PI * cycles * t / 16 + phase) + 0.3 * (random.NextDouble() * 2 - 1));
                return string.Join(",", samples.Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture))) + "," + label;
            }));
        }

        [Fact]
        public void TrainedLstm_ClassifiesSequencesWellAboveChance_AndKeepsItsAccuracyInInt8()
        {
            string train = Path.Combine(_dir, "train.csv"), test = Path.Combine(_dir, "test.csv");
            WriteWaves(train, 600, 1);
            WriteWaves(test, 300, 2);
            var options = new TrainingOptions
            {
                Plan = WaveClassifier.Plan with { Data = train, TestData = test },
                CheckpointDirectory = Path.Combine(_dir, "ckpt"),
                ReportPath = Path.Combine(_dir, "report.json"),
                PlainProgress = true,
            };
            Assert.Equal(0, Trainer.Train(options, () => new WaveClassifier()));

            var report = TrainingReport.Read(options.ReportPath);
            // Chance is 1/3.
            Assert.True(report.TestAccuracy > 0.85, $"fp32 test accuracy {report.TestAccuracy}");
            var optimized = report.GetSection<OptimizationReport>("optimized")!;
            Assert.Equal(new[] { "Quantize DynamicInt8" }, optimized.Passes);
            Assert.True(Math.Abs(optimized.TestAccuracy!.Value - report.TestAccuracy!.Value) <= 0.02,
                $"int8 test accuracy {optimized.TestAccuracy} vs fp32 {report.TestAccuracy}");
            Assert.True(Math.Abs(optimized.ValLoss!.Value - report.ValLoss!.Value) < 0.05, $"int8 val loss {optimized.ValLoss} vs fp32 {report.ValLoss}");

            // The exported int8 model holds the LSTM's int8 products, and its logits stay close to the float model's.
            using var scope = NewDisposeScope();
            var model = WaveClassifier.Load(Path.Combine(_dir, "ckpt", "checkpoint.ckpt"));
            model.eval();
            var int8 = Quantize.Load(new WaveClassifier(), Path.Combine(_dir, "ckpt", "optimized.bin"));
            Assert.Equal(3, Quantize.QuantizedLayers(int8).Count()); // Rnn's two products and Head
            // The generated Load (what evaluate, predict and export use) rebuilds the int8 LSTM from the file too.
            using var loaded = WaveClassifier.Load(Path.Combine(_dir, "ckpt", "optimized.bin"));
            Assert.IsType<DynamicQuantizedLSTM>(Assert.IsType<RecurrentLayer>(loaded.GetLayer("Rnn")).Module);
            var rows = File.ReadLines(test).Select(l => l.Split(',')[..16].Select(v => float.Parse(v, System.Globalization.CultureInfo.InvariantCulture))).SelectMany(v => v).ToArray();
            var x = tensor(rows).reshape(-1, 16, 1);
            using (no_grad())
            {
                var (fp32, q8) = (model.call(x), int8.call(x));
                Assert.Equal(0f, loaded.call(x).sub(q8).abs().max().item<float>());
                // 7-bit activations (reduce_range) over a one-feature input cost a few percent of the logits' range
                // (measured: 1.7 of ±21.6 at most, 0.04 on average); the predictions do not change.
                var difference = (fp32 - q8).abs().max().item<float>();
                var scale = fp32.abs().max().item<float>();
                Assert.True(difference < 0.12 * scale, $"int8 logits differ by {difference} (largest logit {scale}, mean difference {(fp32 - q8).abs().mean().item<float>()})");
                Assert.True(fp32.argmax(1).eq(q8.argmax(1)).to(ScalarType.Float32).mean().item<float>() >= 0.98f, "int8 and fp32 disagree on more than 2% of the test set");
                Console.WriteLine($"WaveClassifier int8 vs fp32 logits: max |difference| {difference} of ±{scale}, mean {(fp32 - q8).abs().mean().item<float>()}");
            }
        }

        [Fact]
        public void QuantizeDynamic_OfAGeneratedModel_ConvertsEveryRecurrentLayer_AndStaysCloseToFloat()
        {
            using var scope = NewDisposeScope();
            manual_seed(4);
            var model = new RecurrentZoo();
            model.eval();
            var quantized = Quantize.Dynamic(model, QuantizeMode.DynamicInt8);
            var layer = Assert.IsType<RecurrentLayer>(((RecurrentZoo)quantized).GetLayer("Both"));
            Assert.True(layer.IsQuantized);
            Assert.IsType<DynamicQuantizedGRU>(layer.Module);
            Assert.IsType<GRU>(model.Both); // the original keeps its float layers
            // 1 + 2·2 + 3 + 2 layer-directions, two products each, and the Linear head.
            Assert.Equal(2 * (1 + 4 + 3 + 2) + 1, Quantize.QuantizedLayers(quantized).Count());
            var e = Assert.Throws<ModelDsl.LayerReplacedException>(() => ((RecurrentZoo)quantized).First);
            Assert.Contains("DynamicQuantizedLSTM", e.Message);

            var x = randn(3, 5, 6);
            using (no_grad())
            {
                var difference = (model.call(x) - quantized.call(x)).abs().max().item<float>();
                Assert.True(difference < 0.05f, $"int8 output differs by {difference}");
                Assert.False(model.call(x).equal(quantized.call(x)).all().item<bool>()); // it did change the arithmetic
            }
        }
    }
}
