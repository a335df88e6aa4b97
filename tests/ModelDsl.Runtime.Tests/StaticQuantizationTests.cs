using System.Collections.Generic;
using System.IO;
using System.Text.Json;
using ModelDsl.Runtime.Optimization;
using ModelDsl.Runtime.Quantization;
using ModelDsl.Runtime.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests.StaticInt8
{
    /// <summary>The model of Oracles/gen_static_quant.py, under the same layer names.</summary>
    [Model(Input = "B, 1, 8, 8")]
    public partial class StaticOracleCnn
    {
        [Conv2d(4, 3, Padding = 1)] public partial Conv2d Conv1 { get; }
        [BatchNorm2d]               public partial BatchNorm2d Norm1 { get; }
        [ReLU]                      public partial ReLU Act1 { get; }
        [Conv2d(6, 3, Padding = 1)] public partial Conv2d Conv2 { get; }
        [BatchNorm2d]               public partial BatchNorm2d Norm2 { get; }
        [ReLU]                      public partial ReLU Act2 { get; }
        [MaxPool2d(2)]              public partial MaxPool2d Pool { get; }
        [Flatten]                   public partial Flatten Flat { get; }
        [Linear(16)]                public partial Linear Hidden { get; }
        [ReLU]                      public partial ReLU Act3 { get; }
        [Linear(10)]                public partial Linear Output { get; }
    }

    /// <summary>A plan with static int8 after a structured cut: the pipeline, the file and the CLI.</summary>
    [Model(Input = "B, 1, 4, 4")]
    [Train(Loss.CrossEntropy, Optimizer.SGD, LearningRate = 0.05, Epochs = 1, BatchSize = 16, ValidationFraction = 0.2, Seed = 1)]
    [Prune(PruneMethod.Structured, 2, Targets = new[] { nameof(Conv) })]
    [Quantize(QuantizeMode.StaticInt8, CalibrationBatches = 2)]
    public partial class StaticNet
    {
        [Conv2d(6, 3, Padding = 1)] public partial Conv2d Conv { get; }
        [BatchNorm2d]               public partial BatchNorm2d Norm { get; }
        [ReLU]                      public partial ReLU Act { get; }
        [MaxPool2d(2)]              public partial MaxPool2d Pool { get; }
        [Flatten]                   public partial Flatten Flat { get; }
        [Linear(8)]                 public partial Linear Hidden { get; }
        [ReLU]                      public partial ReLU Act2 { get; }
        [Linear(3)]                 public partial Linear Output { get; }
    }

    /// <summary>
    /// Static int8 (<see cref="Quantize.Static"/>, <c>[Quantize(QuantizeMode.StaticInt8)]</c>) against PyTorch 1.13's eager
    /// post-training static quantisation with <c>get_default_qconfig("x86")</c> (Oracles/gen_static_quant.py writes
    /// static_quantization.json), its kernels against a torch-ops reference, and a declared pass end to end.
    /// </summary>
    [Collection(GlobalTorchStateCollection.Name)]
    public sealed class StaticQuantizationTests : IDisposable
    {
        private static readonly JsonElement Oracle = OracleVectors.Load("static_quantization.json");
        private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-static8-").FullName;

        public void Dispose() => Directory.Delete(_dir, recursive: true);

        private static Tensor Values(JsonElement e) => OracleVectors.Tensor(e.GetProperty("values"), e.GetProperty("shape"));

        /// <summary>Float32 values one unit in the last place apart or closer.</summary>
        private static void AssertWithinUlp(float expected, float actual, string what) =>
            Assert.True(Math.Abs(BitConverter.SingleToInt32Bits(expected) - BitConverter.SingleToInt32Bits(actual)) <= 1,
                $"{what}: expected {expected:R}, got {actual:R}");

        public static IEnumerable<object[]> ObserverNames() =>
            Oracle.GetProperty("observers").EnumerateArray().Select(o => new object[] { o.GetProperty("name").GetString()! });

        [Theory]
        [MemberData(nameof(ObserverNames))]
        public void HistogramObserver_FedWhatPyTorchsSaw_ChoosesItsRangeScaleAndZeroPoint_Exactly(string name)
        {
            var o = Oracle.GetProperty("observers").EnumerateArray().First(e => e.GetProperty("name").GetString() == name);
            using var observer = new HistogramObserver();
            foreach (var seen in o.GetProperty("seen").EnumerateArray())
                using (var t = Values(seen)) observer.Observe(t);

            Assert.Equal(o.GetProperty("min_val").GetSingle(), observer.Range.Min);
            Assert.Equal(o.GetProperty("max_val").GetSingle(), observer.Range.Max);
            var (min, max) = observer.SearchRange();
            Assert.Equal(o.GetProperty("search_min").GetSingle(), min);
            Assert.Equal(o.GetProperty("search_max").GetSingle(), max);
            var (scale, zeroPoint) = observer.QParams();
            Assert.Equal(o.GetProperty("scale").GetSingle(), scale);
            Assert.Equal(o.GetProperty("zero_point").GetInt32(), zeroPoint);
        }

        private static StaticOracleCnn OracleModel()
        {
            var model = new StaticOracleCnn();
            var state = Oracle.GetProperty("float_state");
            using (no_grad())
            {
                foreach (var (key, tensor) in model.state_dict())
                {
                    if (key.EndsWith("num_batches_tracked", StringComparison.Ordinal)) continue;
                    using var value = Values(state.GetProperty(key));
                    tensor.copy_(value);
                }
            }
            model.eval();
            return model;
        }

        private static List<Tensor> Calibration() =>
            Oracle.GetProperty("calibration").EnumerateArray().Select(Values).ToList();

        [Fact]
        public void StaticInt8_OfPyTorchsModel_HasItsWeightsScalesAndZeroPoints_AndItsOutputsWithinOneStep()
        {
            using var model = OracleModel();
            var calibration = Calibration();
            var quantized = Quantize.Static(model, calibration);
            Assert.Equal(new[] { "Conv1", "Conv2", "Hidden", "Output" }, quantized);

            // The QuantStub's parameters are the first layer's input; each layer's output is the next one's input.
            var layers = Oracle.GetProperty("layers").EnumerateArray().ToList();
            float inputScale = Oracle.GetProperty("input_scale").GetSingle();
            int inputZeroPoint = Oracle.GetProperty("input_zero_point").GetInt32();
            foreach (var expected in layers)
            {
                string name = expected.GetProperty("name").GetString()!;
                var layer = Assert.IsAssignableFrom<StaticQuantizedLayer>(((ILayerHost)model).GetLayer(name));
                Assert.Equal(OracleVectors.Longs(expected.GetProperty("weight_int8")), layer.weight.to(ScalarType.Int64).data<long>().ToArray());
                var scales = OracleVectors.Floats(expected.GetProperty("weight_scales"));
                var ours = layer.weight_scales.data<float>().ToArray();
                for (int c = 0; c < scales.Length; c++) AssertWithinUlp(scales[c], ours[c], $"{name} weight scale {c}");
                Assert.All(OracleVectors.Longs(expected.GetProperty("weight_zero_points")), zp => Assert.Equal(0, zp));
                var bias = OracleVectors.Floats(expected.GetProperty("fused_bias"));
                var ourBias = layer.bias!.data<float>().ToArray();
                for (int c = 0; c < bias.Length; c++) Assert.Equal(bias[c], ourBias[c], 5);

                Assert.Equal(inputZeroPoint, layer.InputQParams.ZeroPoint);
                AssertWithinUlp(inputScale, layer.InputQParams.Scale, $"{name} input scale");
                inputScale = expected.GetProperty("output_scale").GetSingle();
                inputZeroPoint = expected.GetProperty("output_zero_point").GetInt32();
                Assert.Equal(inputZeroPoint, layer.OutputQParams.ZeroPoint);
                AssertWithinUlp(inputScale, layer.OutputQParams.Scale, $"{name} output scale");
                Assert.Equal(name != "Output", layer.FusedRelu);
            }

            // The converted model's outputs: PyTorch's within one step of the output's quantisation (onednn's
            // requantisation rounds its own way); the float model's within the quantisation error.
            using var test = Values(Oracle.GetProperty("test"));
            using var ours8 = model.call(test);
            var expectedOut = OracleVectors.Floats(Oracle.GetProperty("quantized_output"));
            var actual = ours8.data<float>().ToArray();
            float step = layers[^1].GetProperty("output_scale").GetSingle();
            for (int i = 0; i < expectedOut.Length; i++)
                Assert.True(Math.Abs(expectedOut[i] - actual[i]) <= step * 1.0001f, $"output {i}: PyTorch {expectedOut[i]}, ours {actual[i]} (step {step})");
            Assert.True(actual.Count(v => expectedOut.Contains(v)) * 10 >= actual.Length * 9, "at least 90% of the outputs equal PyTorch's");
            foreach (var t in calibration) t.Dispose();
        }

        public static IEnumerable<object[]> Kernels() =>
            new[] { Int8Kernel.Scalar, Int8Kernel.Avx2, Int8Kernel.AvxVnni }.Where(Int8Gemm.IsSupported).Select(k => new object[] { k.ToString() });

        [Theory]
        [MemberData(nameof(Kernels))]
        public void StaticConv2dAndLinear_EqualTheirTorchOpsReference_OnEveryKernel_PastTheCalibratedRangeToo(string kernelName)
        {
            var kernel = Enum.Parse<Int8Kernel>(kernelName);
            using var scope = NewDisposeScope();
            using var generator = new Generator(7);
            var conv = nn.Conv2d(3, 5, (3, 2), stride: (2, 1), padding: (1, 1), dilation: (1, 2));
            var linear = nn.Linear(37, 6); // 37 inputs: the padded tail
            // A small input scale puts most of the input above 127 (up to the 255 clamp): the AVX2 path must not saturate.
            var convQ = new StaticQuantizedConv2d(conv, new StaticQParams(0.01f, 3, 0.02f, 100, FusedRelu: false));
            var linearQ = new StaticQuantizedLinear(linear, new StaticQParams(0.005f, 0, 0.03f, 0, FusedRelu: true));
            var x = rand(new long[] { 2, 3, 9, 7 }, generator: generator) * 3 - 0.2;
            var v = rand(new long[] { 4, 37 }, generator: generator) * 1.5;
            Int8Gemm.Forced = kernel;
            try
            {
                Assert.Equal(Reference(x, convQ, t => nn.functional.conv2d(t, Dequantized(convQ), null, new long[] { 2, 1 }, new long[] { 1, 1 }, new long[] { 1, 2 })).data<float>().ToArray(),
                    convQ.call(x).data<float>().ToArray());
                Assert.Equal(Reference(v, linearQ, t => nn.functional.linear(t, Dequantized(linearQ))).data<float>().ToArray(),
                    linearQ.call(v).data<float>().ToArray());
            }
            finally
            {
                Int8Gemm.Forced = null;
            }
        }

        [Fact]
        public void WeightRewrittenInPlace_AfterQuantisation_IsWhatTheNextCallMultipliesWith()
        {
            // 37 inputs: the GEMM runs a padded copy of the weight, prepared at quantisation; a load writes the stored one.
            using var scope = NewDisposeScope();
            using var generator = new Generator(3);
            var linear = nn.Linear(37, 5);
            var layer = new StaticQuantizedLinear(linear, new StaticQParams(0.01f, 10, 0.05f, 60, FusedRelu: false));
            var x = rand(new long[] { 3, 37 }, generator: generator);
            var before = layer.call(x).data<float>().ToArray();
            using (no_grad())
                layer.weight.copy_(randint(-128, 128, layer.weight.shape, generator: generator).to(ScalarType.Int8));
            var after = layer.call(x).data<float>().ToArray();
            Assert.NotEqual(before, after);
            Assert.Equal(Reference(x, layer, t => nn.functional.linear(t, Dequantized(layer))).data<float>().ToArray(), after);
        }

        private static Tensor Dequantized(StaticQuantizedLayer layer) => layer.weight.to(ScalarType.Float64);

        /// <summary>The layer's arithmetic as torch ops: exact integer sums in float64, then the same float32 roundings.</summary>
        private static Tensor Reference(Tensor x, StaticQuantizedLayer layer, Func<Tensor, Tensor> product)
        {
            var (inScale, inZero) = layer.InputQParams;
            var (outScale, outZero) = layer.OutputQParams;
            var q = x.mul(1f / inScale).round().add(inZero).clamp(0, 255);
            var sums = product((q - inZero).to(ScalarType.Float64)).to(ScalarType.Float32);
            var shape = Enumerable.Repeat(1L, (int)sums.dim()).ToArray();
            shape[1] = -1;
            var scales = layer.weight_scales.to(ScalarType.Float64).mul(inScale).to(ScalarType.Float32).reshape(shape);
            var y = sums.mul(scales).add(layer.bias!.reshape(shape));
            var qy = y.mul(1f / outScale).round().add(outZero).clamp(layer.FusedRelu ? outZero : 0, 255);
            return (qy - outZero).mul(outScale);
        }

        [Fact]
        public void StaticModel_SavesWithQuantizeSave_AndQuantizeLoadSaysHowToLoadIt()
        {
            using var model = OracleModel();
            var calibration = Calibration();
            Quantize.Static(model, calibration);
            var path = Path.Combine(_dir, "static.bin");
            Quantize.Save(model, path);
            using var architecture = new StaticOracleCnn();
            var e = Assert.Throws<InvalidDataException>(() => Quantize.Load(architecture, path));
            Assert.Contains("StaticInt8", e.Message);
            Assert.Contains("Quantize.Static", e.Message);
            foreach (var t in calibration) t.Dispose();
        }

        [Fact]
        public void DynamicQuantisation_RefusesStaticInt8_WithWhatToCallInstead()
        {
            using var linear = nn.Linear(4, 2);
            var e = Assert.Throws<ArgumentException>(() => Quantize.Dynamic(linear, QuantizeMode.StaticInt8));
            Assert.Contains("Quantize.Static", e.Message);
        }

        [Fact]
        public void DeclaredStaticPass_CalibratesAfterTheCut_ExportsAFileThatLoads_AndTheCliEvaluatesAndPredictsWithIt()
        {
            var data = Path.Combine(_dir, "data.csv");
            var random = new Random(11);
            File.WriteAllLines(data, Enumerable.Range(0, 96).Select(i =>
                string.Join(",", Enumerable.Range(0, 16).Select(_ => random.Next(0, 9))) + "," + (i % 3)));
            var options = new TrainingOptions
            {
                Plan = StaticNet.Plan with { Data = data },
                CheckpointDirectory = Path.Combine(_dir, "ckpt"),
                ReportPath = Path.Combine(_dir, "report.json"),
                PlainProgress = true,
            };
            Assert.Equal(0, Trainer.Train(options, () => new StaticNet()));
            var report = TrainingReport.Read(options.ReportPath).GetSection<OptimizationReport>("optimized")!;
            Assert.Equal(new[] { "Prune Structured 2 of Conv", "Quantize StaticInt8, 2 calibration batches" }, report.Passes);
            Assert.Equal(new[] { "Norm" }, report.FoldedBatchNorms);
            Assert.Equal(StaticNet.Plan.ParametersAfterPasses - 2 * 4, report.ParamCountAfter); // the folded BatchNorm's 4 channels
            Assert.Contains(report.PassLatencies, p => p.Pass.StartsWith("Quantize StaticInt8", StringComparison.Ordinal));

            var exported = Path.Combine(_dir, "ckpt", "optimized.bin");
            using var model = StaticNet.Load(exported);
            var host = (ILayerHost)model;
            var conv = Assert.IsType<StaticQuantizedConv2d>(host.GetLayer("Conv"));
            Assert.Equal(4, conv.out_channels);
            Assert.True(conv.FusedRelu);
            Assert.IsType<FoldedBatchNorm>(host.GetLayer("Norm"));
            Assert.IsType<StaticQuantizedLinear>(host.GetLayer("Hidden"));
            Assert.IsType<StaticQuantizedLinear>(host.GetLayer("Output"));
            // The quantised run continues from Conv through the pooling and Flatten into Hidden, and from Hidden into Output.
            Assert.Equal(conv.OutputQParams, ((StaticQuantizedLayer)host.GetLayer("Hidden")).InputQParams);
            Assert.Equal(((StaticQuantizedLayer)host.GetLayer("Hidden")).OutputQParams, ((StaticQuantizedLayer)host.GetLayer("Output")).InputQParams);

            var evaluate = CliCapture.Run(StaticNet.Run, "evaluate", "--model", exported, "--data", data);
            Assert.True(evaluate.ExitCode == 0, evaluate.ToString());
            Assert.Contains("accuracy", evaluate.Stdout);
            var predictions = Path.Combine(_dir, "predictions.csv");
            var predict = CliCapture.Run(StaticNet.Run, "predict", "--model", exported, "--data", data, "--output", predictions);
            Assert.True(predict.ExitCode == 0, predict.ToString());
            var rows = File.ReadAllLines(data).Select(l => l.Split(',').Take(16).Select(c => float.Parse(c, System.Globalization.CultureInfo.InvariantCulture)).ToArray()).ToArray();
            using var x = tensor(rows.SelectMany(r => r).ToArray(), new long[] { rows.Length, 1, 4, 4 }) * (float)StaticNet.Plan.FeatureScale;
            var expected = model.Predict(x).data<long>().ToArray();
            // label,class,p0,...: the labels are in the file.
            var written = File.ReadAllLines(predictions).Skip(1).Select(l => long.Parse(l.Split(',')[1], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            Assert.Equal(expected, written);
        }
    }
}
