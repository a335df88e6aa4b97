using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text.Json;
using ModelDsl.Runtime.Training;
using TorchSharp.Modules;

namespace ModelDsl.Runtime.Tests.LrFind
{
    [Model(Input = "B, 4")]
    [Train(Loss.CrossEntropy, Optimizer.SGD, LearningRate = 0.1, Momentum = 0.9, Epochs = 1, BatchSize = 16, Seed = 5)]
    public partial class LrNet
    {
        [Linear(16)] public partial Linear Hidden { get; }
        [ReLU]       public partial ReLU Act { get; }
        [Linear(3)]  public partial Linear Output { get; }
    }

    /// <summary>
    /// lr-find: the sweep's arithmetic against PyTorch (Oracles/gen_lr_find.py), and the command on a small model:
    /// an exponential sweep, a suggestion inside the range and below the divergence, the PNG and CSV written,
    /// checkpoints untouched, bad arguments one line and exit code 2.
    /// </summary>
    [Collection(GlobalTorchStateCollection.Name)]
    public sealed class LearningRateFinderTests : IDisposable
    {
        private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-lrfind-").FullName;

        public void Dispose() => Directory.Delete(_dir, recursive: true);

        [Fact]
        public void Sweep_IsExponential_AsPyTorchComputesIt()
        {
            var lrs = OracleVectors.Load("lr_find.json").GetProperty("lrs");
            double start = lrs.GetProperty("start").GetDouble(), end = lrs.GetProperty("end").GetDouble();
            int steps = lrs.GetProperty("steps").GetInt32();
            var expected = lrs.GetProperty("values").EnumerateArray().Select(v => v.GetDouble()).ToArray();
            Assert.Equal(steps, expected.Length);
            for (int i = 0; i < steps; i++)
                Assert.Equal(expected[i], LearningRateFinder.LearningRateAt(i, steps, start, end), expected[i] * 1e-12);
            Assert.Equal(start, LearningRateFinder.LearningRateAt(0, steps, start, end));
            Assert.Equal(end, LearningRateFinder.LearningRateAt(steps - 1, steps, start, end), end * 1e-12);
        }

        [Theory]
        [InlineData("u_shape")]
        [InlineData("rising")]
        [InlineData("nan_at_60")]
        [InlineData("too_short")]
        public void SmoothingStopAndSuggestion_MatchTheOracle(string id)
        {
            var c = OracleVectors.Load("lr_find.json").GetProperty("cases").EnumerateArray().Single(e => OracleVectors.Id(e) == id);
            var losses = Doubles(c.GetProperty("losses"));
            var expected = Doubles(c.GetProperty("smoothed"));
            var (smoothed, stopAt) = LearningRateFinder.Smooth(losses);

            Assert.Equal(expected.Length, smoothed.Length);
            for (int i = 0; i < expected.Length; i++)
            {
                if (double.IsNaN(expected[i])) Assert.True(double.IsNaN(smoothed[i]), $"point {i}: {smoothed[i]}, expected NaN");
                else Assert.Equal(expected[i], smoothed[i], 1e-12);
            }
            Assert.Equal(NullableInt(c.GetProperty("stop_at")), stopAt);
            Assert.Equal(NullableInt(c.GetProperty("suggestion")), LearningRateFinder.Suggest(smoothed));
        }

        [Fact]
        public void LrFind_SweepsExponentially_SuggestsARateBelowTheDivergence_AndWritesThePlotAndValues()
        {
            string data = Data();
            string png = Path.Combine(_dir, "out", "sweep.png");
            // Up to 1000: far enough for this small model's loss to blow up.
            var run = CliCapture.Run(LrNet.Run, "lr-find", "--data", data, "--output", png, "--end-lr", "1000");
            Assert.True(run.ExitCode == 0, run.ToString());

            // The PNG and its values beside it.
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(png)[..4]);
            var rows = File.ReadAllLines(Path.ChangeExtension(png, ".csv"));
            Assert.Equal("step,lr,loss,smoothed", rows[0]);
            var points = rows.Skip(1).Select(r => r.Split(',').Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToArray();
            Assert.InRange(points.Length, LearningRateFinder.SkipBegin + 3, 100);

            // Exponential from 1e-7 towards 1000 over 100 steps: a constant ratio 10^(10/99) between neighbours.
            Assert.Equal(1e-7, points[0][1]);
            double ratio = Math.Pow(1e10, 1.0 / 99);
            for (int i = 1; i < points.Length; i++)
                Assert.Equal(ratio, points[i][1] / points[i - 1][1], 1e-9);

            // SGD with momentum 0.9 cannot survive rates far above 1: the sweep stops where the smoothed loss passes 4x its best.
            Assert.True(points.Length < 100, run.ToString());
            double best = points.Min(p => p[3]);
            Assert.True(points[^1][3] > LearningRateFinder.DivergenceFactor * best || !double.IsFinite(points[^1][2]), run.ToString());
            Assert.Contains($"stopped after step {points.Length} of 100", run.Stdout);

            // The suggestion: a rate of the sweep, inside the range, below the divergence, and where the loss fell.
            var line = run.Stdout.Split('\n').Single(l => l.StartsWith("suggested learning rate: ", StringComparison.Ordinal));
            double suggested = double.Parse(line["suggested learning rate: ".Length..].Split(' ')[0], CultureInfo.InvariantCulture);
            int step = int.Parse(line[(line.LastIndexOf("step ", StringComparison.Ordinal) + 5)..].TrimEnd(')', '\r'), CultureInfo.InvariantCulture);
            Assert.Equal(points[step - 1][1], suggested, suggested * 1e-3);
            Assert.InRange(suggested, 1e-7, 1000);
            Assert.True(suggested < points[^1][1]);
            Assert.True(points[step - 1][3] < points[LearningRateFinder.SkipBegin][3], "the smoothed loss falls up to the suggestion");
            Assert.Contains($"plot: {png}", run.Stdout);
        }

        [Fact]
        public void LrFind_LeavesCheckpointsAlone()
        {
            string data = Data();
            string ckpt = Path.Combine(_dir, "ckpt");
            var train = CliCapture.Run(LrNet.Run, "--data", data, "--checkpoint-dir", ckpt, "--plain");
            Assert.True(train.ExitCode == 0, train.ToString());
            var before = Directory.GetFiles(ckpt).ToDictionary(f => f, File.ReadAllBytes);

            string work = Directory.GetCurrentDirectory();
            bool defaultDirBefore = Directory.Exists(Path.Combine(work, "checkpoints", nameof(LrNet)));
            var run = CliCapture.Run(LrNet.Run, "lr-find", "--data", data, "--steps", "20", "--output", Path.Combine(_dir, "a.png"));
            Assert.True(run.ExitCode == 0, run.ToString());

            Assert.Equal(before.Keys.Order(), Directory.GetFiles(ckpt).Order());
            foreach (var (file, bytes) in before) Assert.Equal(bytes, File.ReadAllBytes(file));
            Assert.Equal(defaultDirBefore, Directory.Exists(Path.Combine(work, "checkpoints", nameof(LrNet))));
            // 20 steps of a fresh model at rates up to 10 (with 20 steps too few points remain after divergence, or one is suggested).
            Assert.Contains("lr-find LrNet: 20 steps from 1E-07 to 10 (SGD, CrossEntropy loss, batch 16)", run.Stdout);
        }

        [Theory]
        [InlineData("--start-lr", "0", "--start-lr must be a positive number, got 0")]
        [InlineData("--end-lr", "1e-8", "--end-lr must be a number above --start-lr (1E-07), got 1E-08")]
        [InlineData("--steps", "1", "--steps must be at least 2, got 1")]
        [InlineData("--batch-size", "0", "--batch-size must be at least 1, got 0")]
        [InlineData("--data", "{dir}/none.csv", "Data file not found")]
        public void LrFind_BadArguments_AreOneLine_ExitCode2(string option, string value, string expected)
        {
            var args = new List<string> { "lr-find", option, value.Replace("{dir}", _dir), "--output", Path.Combine(_dir, "x.png") };
            if (option != "--data") args.AddRange(new[] { "--data", Data() });
            var run = CliCapture.Run(LrNet.Run, args.ToArray());
            Assert.Equal(2, run.ExitCode);
            var line = Assert.Single(run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.StartsWith("error: ", line);
            Assert.Contains(expected, line);
            Assert.False(File.Exists(Path.Combine(_dir, "x.png")));
        }

        [Theory]
        [InlineData("--help")]
        [InlineData("lr-find", "--help")]
        [InlineData("evaluate", "--help")]
        public void Help_HasOneUsageBlock(params string[] args)
        {
            var run = CliCapture.Run(LrNet.Run, args);
            Assert.Equal(0, run.ExitCode);
            Assert.Single(System.Text.RegularExpressions.Regex.Matches(run.Stdout, "Usage:"));
            Assert.Contains(args.Length == 1 ? "lr-find" : "--header", run.Stdout);
        }

        // Three classes by the sign pattern of the first two features, 240 rows: learnable, so the loss falls first.
        private string Data()
        {
            string path = Path.Combine(_dir, "train.csv");
            if (File.Exists(path)) return path;
            var random = new Random(7);
            File.WriteAllLines(path, Enumerable.Range(0, 240).Select(_ =>
            {
                double[] x = Enumerable.Range(0, 4).Select(_ => random.NextDouble() * 2 - 1).ToArray();
                int label = x[0] > 0 ? 0 : x[1] > 0 ? 1 : 2;
                return string.Join(",", x.Select(v => v.ToString("0.###", CultureInfo.InvariantCulture))) + "," + label;
            }));
            return path;
        }

        private static double[] Doubles(JsonElement e) =>
            e.EnumerateArray().Select(v => v.ValueKind == JsonValueKind.Null ? double.NaN : v.GetDouble()).ToArray();

        private static int? NullableInt(JsonElement e) => e.ValueKind == JsonValueKind.Null ? null : e.GetInt32();
    }
}
