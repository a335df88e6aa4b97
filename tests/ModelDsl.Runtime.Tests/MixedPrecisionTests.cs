using System.Collections.Generic;
using System.IO;
using System.Text.Json.Nodes;
using ModelDsl.Runtime.Tests.Text;
using ModelDsl.Runtime.Training;
using ModelDsl.Runtime.Training.MixedPrecision;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests.Precision
{
    /// <summary>A convolution, a BatchNorm and a Linear head: layers of each autocast policy with weights.</summary>
    [Model(Input = "B, 1, 8, 8")]
    [Train(Loss.CrossEntropy, Optimizer.Adam, LearningRate = 1e-2, Epochs = 2, BatchSize = 16, Seed = 5, ValidationFraction = 0, Precision = ModelDsl.Precision.BFloat16)]
    public partial class MixedNet
    {
        [Conv2d(4, 3, Padding = 1)] public partial Conv2d Conv { get; }
        [BatchNorm2d]               public partial BatchNorm2d Norm { get; }
        [ReLU]                      public partial ReLU Act { get; }
        [Flatten]                   public partial Flatten Flat { get; }
        [Linear(3)]                 public partial Linear Output { get; }
    }

    /// <summary>
    /// bf16 mixed precision (<see cref="BFloat16Training"/>): which layers the working copy runs in bfloat16, that the
    /// float32 master gets the gradients (a tied weight both uses'), that BatchNorm's statistics come back, and through
    /// the trainer: the report's <c>precision</c>, the fp32 fallback on a CPU without bfloat16 instructions, and a short
    /// Digits run against fp32.
    /// </summary>
    [Collection(GlobalTorchStateCollection.Name)]
    public sealed class MixedPrecisionTests : IDisposable
    {
        private static readonly CpuFeatures Bf16Cpu = new("sse4_2 avx2 avx512f avx512_bf16");
        private static readonly CpuFeatures Avx2Cpu = new("sse4_2 avx avx2 fma");
        private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-bf16-").FullName;

        public void Dispose()
        {
            try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        }

        [Fact]
        public void DeclaredPrecision_ReachesTheGeneratedPlan()
        {
            Assert.Equal(ModelDsl.Precision.BFloat16, MixedNet.Plan.Precision);
            Assert.Equal(ModelDsl.Precision.Float32, Text.TinyLm.Plan.Precision);
        }

        [Fact]
        public void WorkingCopy_RunsLinearInBFloat16_ConvAndBatchNormInFloat32_AndTheMasterGetsFloat32Gradients()
        {
            torch.manual_seed(1);
            var x = torch.randn(16, 1, 8, 8);
            var y = torch.randint(0, 3, 16);
            var (reference, master) = (new MixedNet(), new MixedNet());
            master.load_state_dict(reference.state_dict());
            using var precision = new BFloat16Training(master, new MixedNet());
            // Linear's weight and bias in bfloat16; the convolution's (libtorch's bfloat16 convolution is wrong here) and
            // BatchNorm's in float32.
            Assert.Equal((2, 6), precision.ParameterDtypes);

            reference.train();
            nn.functional.cross_entropy(reference.call(x), y).backward();
            master.train();
            var output = precision.Forward(x, weightsChanged: true);
            Assert.Equal(ScalarType.Float32, output.dtype);
            nn.functional.cross_entropy(output, y).backward();
            precision.CollectGradients();

            foreach (var ((name, want), (_, got)) in reference.named_parameters().Zip(master.named_parameters()))
            {
                Assert.Equal(ScalarType.Float32, got.grad!.dtype);
                // The convolution's bias feeds a BatchNorm, which removes it: its true gradient is rounding noise (~1e-7),
                // measured against a floor of 1e-2 instead.
                double error = RelativeError(got.grad!, want.grad!, floor: 1e-2);
                // bfloat16 keeps 8 significant bits: the gradients agree to a few parts in a thousand, not bitwise.
                Assert.True(error < 3e-2, $"{name}: relative error {error:E2}");
                // Every gradient reaches back through the bfloat16 Linear: none is bitwise float32's.
                Assert.True(error > 0, $"{name}: bitwise equal to fp32, so bfloat16 did not run");
            }
            // The copy's forward updated BatchNorm's running statistics; the master holds them.
            Assert.True(RelativeError(master.Norm.running_mean!, reference.Norm.running_mean!) < 3e-2);
            Assert.Equal(1, master.Norm.num_batches_tracked!.item<long>());
        }

        [Fact]
        public void TiedWeight_GetsTheGradientsOfBothUses_EmbeddingAndHead()
        {
            torch.manual_seed(2);
            var x = torch.randint(0, 16, new long[] { 4, 16 });
            var (reference, master) = (new TinyLm(), new TinyLm());
            master.load_state_dict(reference.state_dict());
            using var precision = new BFloat16Training(master, new TinyLm());

            nn.functional.cross_entropy(reference.call(x).reshape(-1, 16), x.reshape(-1)).backward();
            nn.functional.cross_entropy(precision.Forward(x, weightsChanged: true).reshape(-1, 16), x.reshape(-1)).backward();
            precision.CollectGradients();

            // The table is the embedding's lookup (float32 in the copy) and the head's weight (bfloat16 in the copy):
            // the master's one tensor must hold the sum; either use alone is far off.
            var want = reference.Tokens.weight!.grad!;
            Assert.True(RelativeError(master.Tokens.weight!.grad!, want) < 5e-2, $"tied: {RelativeError(master.Tokens.weight!.grad!, want):E2}");
            foreach (var (name, p) in master.named_parameters())
                Assert.True(p.grad is not null && p.grad.abs().sum().item<float>() > 0, $"{name} got no gradient");
        }

        [Fact]
        public void Trainer_InBFloat16_ReportsBf16_AndEndsNearFloat32()
        {
            var (bf16, bf16Weights) = Train(MixedNet.Plan, Bf16Cpu, "bf16");
            var (fp32, fp32Weights) = Train(MixedNet.Plan with { Precision = ModelDsl.Precision.Float32 }, Bf16Cpu, "fp32");
            Assert.Equal("bf16", bf16.Precision);
            Assert.Equal("fp32", fp32.Precision);
            Assert.NotEqual(fp32Weights["Output.weight"], bf16Weights["Output.weight"]);
            Assert.True(Math.Abs(bf16.FinalTrainLoss - fp32.FinalTrainLoss) < 0.05 * fp32.FinalTrainLoss, $"bf16 {bf16.FinalTrainLoss} vs fp32 {fp32.FinalTrainLoss}");
        }

        [Fact]
        public void Trainer_OnACpuWithoutBFloat16Instructions_FallsBackToFloat32_WithOneWarning()
        {
            TrainingReport? report = null;
            Dictionary<string, float[]>? weights = null;
            var run = CliCapture.Run(_ => { (report, weights) = Train(MixedNet.Plan, Avx2Cpu, "fallback"); return 0; });
            var (fp32, fp32Weights) = Train(MixedNet.Plan with { Precision = ModelDsl.Precision.Float32 }, Avx2Cpu, "fp32");

            Assert.Single(run.Stdout.Split('\n'), l => l.Contains("--precision bf16", StringComparison.Ordinal));
            Assert.Contains("warning: --precision bf16: this CPU has neither AVX-512 BF16 nor AMX", run.Stdout, StringComparison.Ordinal);
            Assert.Equal("fp32", report!.Precision);
            // The fallback is float32 itself: bit for bit the float32 run.
            foreach (var (name, w) in fp32Weights) Assert.Equal(w, weights![name]);
        }

        [Fact]
        public void CpuFeatures_BFloat16NeedsAvx512Bf16OrAmx()
        {
            Assert.True(Bf16Cpu.HasBFloat16MatrixProducts);
            Assert.True(new CpuFeatures("avx2 amx_bf16 amx_tile").HasBFloat16MatrixProducts);
            Assert.False(Avx2Cpu.HasBFloat16MatrixProducts);
            Assert.False(new CpuFeatures("avx512f avx512_vnni").HasBFloat16MatrixProducts);
        }

        [Fact]
        public void DigitsMlp_ShortRunInBFloat16_ReachesTheAccuracyOfFloat32()
        {
            // Lean: the MLP for 3 epochs, both precisions, --deterministic (dropout off); this machine's CPU decides
            // whether bf16 runs, and the report says which ran.
            var runs = new[] { "fp32", "bf16" }.Select(p =>
            {
                string report = Path.Combine(_dir, p + ".json");
                var run = DigitsProgram.Run(_dir, "mlp", "--epochs", "3", "--deterministic", "--no-optimize", "--precision", p,
                    "--report", report, "--checkpoint-dir", Path.Combine(_dir, p), "--plain");
                Assert.True(run.ExitCode == 0, run.ToString());
                return JsonNode.Parse(File.ReadAllText(report))!;
            }).ToArray();
            double fp32 = (double)runs[0]["test_accuracy"]!, bf16 = (double)runs[1]["test_accuracy"]!;
            Assert.Equal(CpuFeatures.Current.HasBFloat16MatrixProducts ? "bf16" : "fp32", (string)runs[1]["precision"]!);
            Assert.True(fp32 > 0.93, $"fp32 {fp32:P2}");
            Assert.True(Math.Abs(bf16 - fp32) <= 0.01, $"bf16 {bf16:P2} vs fp32 {fp32:P2}");
        }

        private (TrainingReport Report, Dictionary<string, float[]> Weights) Train(TrainingPlan plan, CpuFeatures cpu, string name)
        {
            var options = new TrainingOptions
            {
                Plan = plan with { Data = Data() },
                CheckpointDirectory = Path.Combine(_dir, name),
                ReportPath = Path.Combine(_dir, name + ".json"),
                PlainProgress = true,
                Deterministic = true,
                Cpu = cpu,
            };
            Assert.Equal(0, Trainer.Train(options, () => new MixedNet()));
            using var model = new MixedNet();
            Inference.ModelLoader.LoadInto(model, Path.Combine(options.CheckpointDirectory, Checkpoint.FileName), plan.ModelName);
            return (TrainingReport.Read(options.ReportPath), model.named_parameters().ToDictionary(p => p.name, p => p.parameter.data<float>().ToArray()));
        }

        /// <summary>128 rows of 64 pixels and one of 3 classes, the class visible in the pixels.</summary>
        private string Data()
        {
            var path = Path.Combine(_dir, "data.csv");
            if (File.Exists(path)) return path;
            var random = new Random(7);
            File.WriteAllLines(path, Enumerable.Range(0, 128).Select(i =>
                string.Join(",", Enumerable.Range(0, 64).Select(j => (random.NextDouble() + (j % 3 == i % 3 ? 0.5 : 0)).ToString("0.###", System.Globalization.CultureInfo.InvariantCulture))) + "," + (i % 3)));
            return path;
        }

        private static double RelativeError(Tensor got, Tensor want, double floor = 1e-30)
        {
            using var diff = (got - want).norm();
            using var scale = want.norm();
            return diff.item<float>() / Math.Max(scale.item<float>(), floor);
        }
    }
}
