using System.Globalization;
using System.IO;
using ModelDsl.Layers;
using ModelDsl.Runtime.Inference;
using ModelDsl.Runtime.Onnx;
using ModelDsl.Runtime.Tests.Onnx;
using ModelDsl.Runtime.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests.Graphs
{
    /// <summary>
    /// Two inputs on real data: the optdigits image (1×8×8 pixel counts) and four features derived from it (the mean
    /// pixel count of each band of two rows), read by separate branches and joined.
    /// </summary>
    [Model(Inputs = new[] { "image: B, 1, 8, 8", "meta: B, 4" })]
    [Train(Loss.CrossEntropy, Optimizer.Adam, LearningRate = 3e-3, Epochs = 6, BatchSize = 64, Seed = 0,
           FeatureScale = 1.0 / 16, ValidationFraction = 0)]
    public partial class TwoInputDigits
    {
        [Conv2d(8, 3, Padding = 1)]                 public partial Conv2d Conv { get; }
        [ReLU]                                      public partial ReLU Act { get; }
        [MaxPool2d(2)]                              public partial MaxPool2d Pool { get; }
        [Flatten]                                   public partial Flatten Flat { get; }
        [Linear(16, From = "meta")]                 public partial Linear MetaHidden { get; }
        [ReLU]                                      public partial ReLU MetaAct { get; }
        [Concat(nameof(Flat), nameof(MetaAct))]     public partial Concat Joined { get; }
        [Linear(10)]                                public partial Linear Head { get; }
    }

    /// <summary>A BatchNorm reading an input (nothing to fold into) beside one reading a Linear alone (folded).</summary>
    [Model(Inputs = new[] { "a: B, 3", "b: B, 3" })]
    public partial class NormOnInput
    {
        [BatchNorm1d(From = "b")]               public partial BatchNorm1d NormB { get; }
        [Linear(3, From = "a")]                 public partial Linear Lin { get; }
        [BatchNorm1d]                           public partial BatchNorm1d NormLin { get; }
        [Add(nameof(NormB), nameof(NormLin))]   public partial Add Sum { get; }
    }

    /// <summary>
    /// A model with two inputs, end to end: trained by the generated trainer on rows that hold both inputs side by side
    /// (the image's 64 columns, then meta's 4), Predict with two inputs against forward, load from the checkpoint and
    /// ONNX export with one graph input per model input, run by ONNX Runtime.
    /// </summary>
    [Collection(GlobalTorchStateCollection.Name)]
    public sealed class MultiInputTests : IDisposable
    {
        private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-inputs-").FullName;

        public void Dispose() => Directory.Delete(_dir, recursive: true);

        /// <summary>An optdigits file as rows of image (64 pixel counts), meta (4 band means) and the label.</summary>
        private string TwoInputCsv(string name)
        {
            var rows = File.ReadAllLines(Path.Combine(RepoRoot(), "samples", "Digits", "data", name)).Where(l => l.Length > 0).Select(line =>
            {
                var values = line.Split(',').Select(v => int.Parse(v, CultureInfo.InvariantCulture)).ToArray();
                var bands = Enumerable.Range(0, 4).Select(b => values.Skip(16 * b).Take(16).Sum() / 16.0);
                return string.Join(",", values.Take(64).Select(v => v.ToString(CultureInfo.InvariantCulture))
                    .Concat(bands.Select(m => m.ToString("R", CultureInfo.InvariantCulture))).Append(values[64].ToString(CultureInfo.InvariantCulture)));
            });
            var path = Path.Combine(_dir, name + ".csv");
            File.WriteAllLines(path, rows);
            return path;
        }

        private static string RepoRoot()
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "ModelDsl.sln"))) dir = dir.Parent;
            return dir?.FullName ?? throw new DirectoryNotFoundException("ModelDsl.sln above " + AppContext.BaseDirectory);
        }

        [Fact]
        public void Summary_ShowsEachInputWithItsShape_AndTheLayersThatReadThem()
        {
            var summary = TwoInputDigits.Summary;
            Assert.True(summary.IsMultiInput);
            Assert.Equal(new[] { ("image", "(B, 1, 8, 8)"), ("meta", "(B, 4)") }, summary.Inputs.Select(i => (i.Name, i.Shape)));
            Assert.Equal("(B, 68)", summary.Input);
            Assert.Equal(new[] { "image" }, summary["Conv"]!.Sources);
            Assert.Equal(new[] { "meta" }, summary["MetaHidden"]!.Sources);
            var table = summary.ToString();
            Assert.Contains("(image)", table, StringComparison.Ordinal);
            Assert.Contains("(meta)", table, StringComparison.Ordinal);
            // A model with one input keeps its one row.
            Assert.Equal(new[] { ("input", "(B, 1, 8, 8)") }, global::Digits.DigitsCnn.Summary.Inputs.Select(i => (i.Name, i.Shape)));
        }

        [Fact]
        public void TrainedOnTwoInputs_ReachesTheAccuracy_PredictsAsForward_AndRoundTripsThroughTheCheckpointAndOnnx()
        {
            var options = new TrainingOptions
            {
                Plan = TwoInputDigits.Plan with { Data = TwoInputCsv("optdigits.tra"), TestData = TwoInputCsv("optdigits.tes") },
                CheckpointDirectory = Path.Combine(_dir, "ckpt"),
                ReportPath = Path.Combine(_dir, "report.json"),
                PlainProgress = true,
                Threads = 1,
            };
            Assert.Equal(0, Trainer.Train(options, () => new TwoInputDigits()));
            var report = TrainingReport.Read(Path.Combine(_dir, "report.json"));
            // 6 epochs of a small two-branch CNN on the 1,797 writer-independent test digits.
            Assert.True(report.TestAccuracy >= 0.93, $"test accuracy {report.TestAccuracy:P2}");

            using var model = TwoInputDigits.Load(Path.Combine(_dir, "ckpt", Checkpoint.FileName));
            using var scope = NewDisposeScope();
            var rows = File.ReadAllLines(Path.Combine(_dir, "optdigits.tes.csv")).Take(200)
                .Select(l => l.Split(',').Take(68).Select(v => float.Parse(v, CultureInfo.InvariantCulture) / 16f).ToArray()).ToArray();
            var packed = tensor(rows.SelectMany(r => r).ToArray(), new long[] { rows.Length, 68 });
            var image = packed.narrow(1, 0, 64).reshape(-1, 1, 8, 8);
            var meta = packed.narrow(1, 64, 4);

            // Predict with two inputs is forward's argmax; the packed row is the same thing, and Pack makes it.
            using (no_grad())
            {
                var forward = model.forward(image, meta);
                Assert.Equal(forward.argmax(1).data<long>().ToArray(), model.Predict(image, meta).data<long>().ToArray());
                Assert.Equal(0f, (model.call(packed) - forward).abs().max().item<float>());
                Assert.Equal(0f, (TwoInputDigits.Pack(image, meta) - packed).abs().max().item<float>());
                Assert.Equal(forward.softmax(1).data<float>().ToArray(), model.PredictProba(image, meta).data<float>().ToArray());

                // The checkpoint holds the trained weights: the loaded model predicts as well as the run reported.
                var labels = File.ReadAllLines(Path.Combine(_dir, "optdigits.tes.csv")).Take(200).Select(l => long.Parse(l.Split(',')[68], CultureInfo.InvariantCulture)).ToArray();
                double accuracy = model.Predict(image, meta).data<long>().ToArray().Zip(labels).Count(p => p.First == p.Second) / (double)labels.Length;
                Assert.True(accuracy >= 0.9, $"loaded model: {accuracy:P1} on 200 test digits");

                // ONNX: one graph input per model input, by name and shape; ONNX Runtime agrees with forward.
                byte[] bytes = OnnxExport.ToBytes(model, TwoInputDigits.Signature);
                using var ort = new OrtRunner(bytes);
                Assert.Equal(new[] { "image", "meta" }, ort.Session.InputMetadata.Keys.OrderBy(k => k, StringComparer.Ordinal));
                Assert.Equal(new[] { -1, 1, 8, 8 }, ort.Session.InputMetadata["image"].Dimensions);
                Assert.Equal(new[] { -1, 4 }, ort.Session.InputMetadata["meta"].Dimensions);
                var onnx = ort.Run(("image", image), ("meta", meta));
                Assert.True((onnx - forward).abs().max().item<float>() < 1e-4f);
            }
        }

        [Fact]
        public void BatchNormFolding_LeavesABatchNormThatReadsAnInput_AndKeepsTheOutputs()
        {
            using var scope = NewDisposeScope();
            manual_seed(4);
            using var model = new NormOnInput();
            using (no_grad())
                foreach (var bn in model.modules().OfType<BatchNorm1d>())
                {
                    bn.running_mean!.normal_(0, 0.5);
                    bn.running_var!.uniform_(0.5, 2.0);
                }
            model.eval();
            var (a, b) = (randn(5, 3), randn(5, 3));
            var before = model.forward(a, b).detach();
            Assert.Equal(new[] { "NormLin" }, Optimization.OptimizationPipeline.FoldBatchNorms(model, ""));
            Assert.IsType<BatchNorm1d>(model.GetLayer("NormB"));
            Assert.True((model.forward(a, b) - before).abs().max().item<float>() < 1e-5f);
        }

        [Fact]
        public void PredictWithAWrongInput_SaysWhichInput_AndWhatItExpects()
        {
            using var model = new TwoInputDigits();
            using var scope = NewDisposeScope();
            var wrongMeta = Assert.Throws<ArgumentException>(() => model.Predict(zeros(3, 1, 8, 8), zeros(3, 5)));
            Assert.Contains("TwoInputDigits input 'meta' expects input (B, 4)", wrongMeta.Message, StringComparison.Ordinal);
            var otherBatch = Assert.Throws<ArgumentException>(() => model.Predict(zeros(3, 1, 8, 8), zeros(2, 4)));
            Assert.Contains("2 samples", otherBatch.Message, StringComparison.Ordinal);
        }
    }
}
