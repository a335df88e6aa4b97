using System.IO;
using TorchSharp.Modules;

namespace ModelDsl.Runtime.Tests.CsvLayout
{
    /// <summary>A label column named by the plan.</summary>
    [Model(Input = "B, 3")]
    [Train(Loss.CrossEntropy, Optimizer.SGD, LearningRate = 0.1, Epochs = 1, BatchSize = 4, ValidationFraction = 0, LabelColumn = "label")]
    public partial class NamedLabelNet
    {
        [Linear(2)] public partial Linear Output { get; }
    }

    /// <summary>No layout declared: header rows detected, the label last unless --label-column says otherwise.</summary>
    [Model(Input = "B, 3")]
    [Train(Loss.CrossEntropy, Optimizer.SGD, LearningRate = 0.1, Epochs = 1, BatchSize = 4, ValidationFraction = 0)]
    public partial class PlainNet
    {
        [Linear(2)] public partial Linear Output { get; }
    }

    /// <summary>The CSV layout through the generated command line: train, evaluate and predict.</summary>
    [Collection(GlobalTorchStateCollection.Name)]
    public sealed class CsvLayoutCliTests : IDisposable
    {
        private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-csvcli-").FullName;

        public void Dispose() => Directory.Delete(_dir, recursive: true);

        // The label first, then three features; labels 0/1.
        private string LabelFirst(string name = "label-first.csv")
        {
            var path = Path.Combine(_dir, name);
            File.WriteAllLines(path, new[] { "label,a,b,c" }.Concat(Enumerable.Range(0, 12).Select(i => $"{i % 2},{i},{i * 0.5},{-i}")));
            return path;
        }

        private string Checkpoints => Path.Combine(_dir, "ckpt");

        [Fact]
        public void DeclaredLabelColumn_TrainsEvaluatesAndPredicts_OnAFileWithTheLabelFirst()
        {
            string data = LabelFirst();
            var train = CliCapture.Run(NamedLabelNet.Run, "--data", data, "--checkpoint-dir", Checkpoints, "--plain", "--threads", "1");
            Assert.True(train.ExitCode == 0, train.ToString());

            var model = Path.Combine(Checkpoints, Training.Checkpoint.FileName);
            var evaluate = CliCapture.Run(NamedLabelNet.Run, "evaluate", "--model", model, "--data", data);
            Assert.True(evaluate.ExitCode == 0, evaluate.ToString());
            Assert.Contains("on 12 samples", evaluate.Stdout);

            // predict copies the named label column (the first) to its output.
            var predict = CliCapture.Run(NamedLabelNet.Run, "predict", "--model", model, "--data", data);
            Assert.True(predict.ExitCode == 0, predict.ToString());
            var lines = predict.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.StartsWith("label,class,p0,p1", lines[0]);
            Assert.Equal(Enumerable.Range(0, 12).Select(i => (i % 2).ToString()), lines.Skip(1).Select(l => l.Split(',')[0]));
        }

        [Fact]
        public void LabelColumnOption_OverridesTheLastColumn_ForTrainAndEvaluate()
        {
            string data = LabelFirst();
            // Without it the header is detected, but the last column (c = 0, -1, ...) is no class label.
            var wrong = CliCapture.Run(PlainNet.Run, "--data", data, "--checkpoint-dir", Checkpoints, "--plain");
            Assert.Equal(2, wrong.ExitCode);
            Assert.Contains("label-first.csv:3: column 4 ('c'): class label '-1' is not a whole non-negative number", wrong.Stderr);

            var right = CliCapture.Run(PlainNet.Run, "--data", data, "--checkpoint-dir", Checkpoints, "--plain", "--label-column", "label");
            Assert.True(right.ExitCode == 0, right.ToString());
            var evaluate = CliCapture.Run(PlainNet.Run, "evaluate", "--model", Path.Combine(Checkpoints, Training.Checkpoint.FileName), "--data", data, "--label-column", "label");
            Assert.True(evaluate.ExitCode == 0, evaluate.ToString());
        }

        [Fact]
        public void HeaderOption_DeclaresANumericHeaderRow()
        {
            var data = Path.Combine(_dir, "numeric-header.csv");
            // A header of numbers is data unless declared: 12 rows, or 11 with --header.
            File.WriteAllLines(data, new[] { "1,2,3,1" }.Concat(Enumerable.Range(0, 11).Select(i => $"{i},{i},{i},{i % 2}")));
            var plain = CliCapture.Run(PlainNet.Run, "evaluate", "--model", TrainOnce(), "--data", data);
            Assert.Contains("on 12 samples", plain.Stdout);
            var header = CliCapture.Run(PlainNet.Run, "evaluate", "--model", TrainOnce(), "--data", data, "--header");
            Assert.True(header.ExitCode == 0, header.ToString());
            Assert.Contains("on 11 samples", header.Stdout);
        }

        [Fact]
        public void LayoutMistakes_AreOneLineAndExitCode2()
        {
            string data = LabelFirst();
            var missing = CliCapture.Run(PlainNet.Run, "--data", data, "--checkpoint-dir", Checkpoints, "--plain", "--label-column", "target");
            Assert.Equal(2, missing.ExitCode);
            Assert.Contains("label-first.csv:1: the header row has no column named 'target' (the label column); its columns are 'label', 'a', 'b', 'c'", missing.Stderr);
            Assert.DoesNotContain("   at ", missing.Stderr);

            var empty = CliCapture.Run(PlainNet.Run, "--data", data, "--checkpoint-dir", Checkpoints, "--label-column", " ");
            Assert.Equal(2, empty.ExitCode);
            Assert.StartsWith("error: --label-column needs the name of a column of the header row", empty.Stderr);
        }

        [Fact]
        public void LayoutOptions_OnALanguageModel_AreAUsageError()
        {
            var run = CliCapture.Run(Text.TinyLm.Run, "--header", "--data", Path.Combine(_dir, "input.txt"));
            Assert.Equal(2, run.ExitCode);
            Assert.StartsWith("error: --header applies to CSV data, and TinyLm is a language model trained on a text file", run.Stderr);
        }

        private string TrainOnce()
        {
            var model = Path.Combine(Checkpoints, Training.Checkpoint.FileName);
            if (File.Exists(model)) return model;
            var run = CliCapture.Run(PlainNet.Run, "--data", LabelFirst("train.csv"), "--checkpoint-dir", Checkpoints, "--plain", "--label-column", "label");
            Assert.True(run.ExitCode == 0, run.ToString());
            return model;
        }
    }
}
