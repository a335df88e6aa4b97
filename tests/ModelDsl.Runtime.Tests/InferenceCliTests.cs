using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Text.Json;
using ModelDsl.Runtime.Inference;
using ModelDsl.Runtime.Training;

namespace ModelDsl.Runtime.Tests;

/// <summary>One short training run of the Digits CNN (with the explicit <c>train</c> word), shared by the tests.</summary>
public sealed class TrainedDigits : IDisposable
{
    public TrainedDigits()
    {
        Dir = Directory.CreateTempSubdirectory("modeldsl-infer-").FullName;
        // 600 training rows and one epoch: a real model, quickly (accuracy is not the point here).
        var data = Path.Combine(Dir, "small.csv");
        File.WriteAllLines(data, File.ReadLines(DigitsProcess.DataFile("optdigits.tra")).Take(600));
        Training = DigitsProcess.Run(Dir, "cnn", "train", "--epochs", "1", "--data", data, "--checkpoint-dir", Checkpoints,
            "--report", ReportPath, "--plain", "--threads", "1");
    }

    public string Dir { get; }
    public string Checkpoints => Path.Combine(Dir, "ckpt");
    public string Last => Path.Combine(Checkpoints, Checkpoint.FileName);
    public string ReportPath => Path.Combine(Dir, "report.json");
    public ProcessResult Training { get; }

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}

/// <summary>
/// The generated trainer's evaluate, predict and export commands and --version, run as real processes on a model
/// the trainer just wrote; the export is loaded back here and by real PyTorch.
/// </summary>
[Trait("Category", "EndToEnd")]
[Collection(GlobalTorchStateCollection.Name)]
public sealed class InferenceCliTests : IClassFixture<TrainedDigits>
{
    private readonly TrainedDigits _run;

    public InferenceCliTests(TrainedDigits run)
    {
        _run = run;
        Assert.True(run.Training.ExitCode == 0, run.Training.ToString());
    }

    private double ReportedTestAccuracy => TrainingReport.Read(_run.ReportPath).TestAccuracy!.Value;

    [Fact]
    public void ExplicitTrainWord_TrainsAsWithout_AndWritesBestCheckpoint()
    {
        var report = TrainingReport.Read(_run.ReportPath);
        Assert.Single(report.History);
        Assert.Equal(1, report.BestEpoch);
        Assert.Equal(TrainingReport.Completed, report.StopReason);
        Assert.Equal(report.History[0].ValLoss, report.BestValLoss);
        Assert.Equal(1, Checkpoint.ReadState(Path.Combine(_run.Checkpoints, Checkpoint.BestFileName)).Epoch);
        Assert.Contains("best: ", _run.Training.Stdout);
    }

    [Fact]
    public void Evaluate_AgreesWithTheTrainingReport_AndWritesJson()
    {
        var json = Path.Combine(_run.Dir, "eval.json");
        var run = DigitsProcess.Run(_run.Dir, "cnn", "evaluate", "--model", _run.Last, "--report", json);
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("confusion matrix", run.Stdout);
        Assert.Contains("precision", run.Stdout);

        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var root = doc.RootElement;
        Assert.Equal(1797, root.GetProperty("samples").GetInt64());
        // The declared test data, the final weights: the same figure the trainer reported.
        Assert.Equal(ReportedTestAccuracy, root.GetProperty("accuracy").GetDouble(), 12);
        var matrix = root.GetProperty("confusion_matrix").EnumerateArray().Select(r => r.EnumerateArray().Select(c => c.GetInt64()).ToArray()).ToArray();
        Assert.Equal(10, matrix.Length);
        Assert.Equal(1797, matrix.Sum(r => r.Sum()));
        var perClass = root.GetProperty("per_class").EnumerateArray().ToArray();
        Assert.Equal(10, perClass.Length);
        for (int c = 0; c < 10; c++)
        {
            Assert.Equal(matrix[c].Sum(), perClass[c].GetProperty("support").GetInt64());
            Assert.Equal((double)matrix[c][c] / matrix[c].Sum(), perClass[c].GetProperty("recall").GetDouble(), 12);
        }
        Assert.True(root.GetProperty("loss").GetDouble() > 0);
    }

    [Fact]
    public void Predict_WritesOneRowPerInput_WithTheMostProbableClass()
    {
        var output = Path.Combine(_run.Dir, "predictions.csv");
        var run = DigitsProcess.Run(_run.Dir, "cnn", "predict", "--model", _run.Last, "--data", DigitsProcess.DataFile("optdigits.tes"), "--output", output);
        Assert.True(run.ExitCode == 0, run.ToString());
        var lines = File.ReadAllLines(output);
        Assert.Equal("label,class,p0,p1,p2,p3,p4,p5,p6,p7,p8,p9", lines[0]);
        Assert.Equal(1798, lines.Length);
        int correct = 0;
        foreach (var line in lines.Skip(1))
        {
            var cells = line.Split(',');
            var p = cells.Skip(2).Select(c => double.Parse(c, CultureInfo.InvariantCulture)).ToArray();
            Assert.Equal(1.0, p.Sum(), 5);
            Assert.Equal(Array.IndexOf(p, p.Max()), int.Parse(cells[1], CultureInfo.InvariantCulture));
            if (cells[0] == cells[1]) correct++;
        }
        Assert.Equal(ReportedTestAccuracy, correct / 1797.0, 12);
    }

    [Fact]
    public void Predict_OfRowsWithoutLabels_AndToStandardOutput()
    {
        var rows = Path.Combine(_run.Dir, "unlabelled.csv");
        File.WriteAllLines(rows, File.ReadLines(DigitsProcess.DataFile("optdigits.tes")).Take(3).Select(l => l.Substring(0, l.LastIndexOf(','))));
        var run = DigitsProcess.Run(_run.Dir, "cnn", "predict", "--model", _run.Last, "--data", rows);
        Assert.True(run.ExitCode == 0, run.ToString());
        var lines = run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("class,p0,p1,p2,p3,p4,p5,p6,p7,p8,p9", lines[0]);
        Assert.Equal(4, lines.Length);
    }

    [Fact]
    public void Export_BothFormats_LoadBackAsTheSameModel()
    {
        using var fromCheckpoint = Digits.DigitsCnn.Load(_run.Last);
        foreach (var (format, name) in new[] { ("pytorch", "cnn.pt"), ("safetensors", "cnn.weights") })
        {
            var path = Path.Combine(_run.Dir, name);
            var run = DigitsProcess.Run(_run.Dir, "cnn", "export", "--model", _run.Last, "--format", format, "--output", path);
            Assert.True(run.ExitCode == 0, run.ToString());
            Assert.Contains("18 tensors", run.Stdout);
            using var exported = Digits.DigitsCnn.Load(path);
            ModelFileTests.AssertSameState(fromCheckpoint, exported);
        }
    }

    [Fact]
    public void ExportedDigitsCnn_LoadsIntoPyTorch_AndPredictsTheSameOnTheTestSet()
    {
        // Real PyTorch: Debian's python3-torch (.ci/run installs it).
        Assert.True(DigitsProcess.HasPyTorch(), "this test needs /usr/bin/python3 with torch (apt-get install python3-torch)");
        var testData = DigitsProcess.DataFile("optdigits.tes");
        using var model = Digits.DigitsCnn.Load(_run.Last);
        var (features, _) = FeatureCsvForTests(testData);
        var expected = model.PredictProba(features * (float)Digits.DigitsCnn.Plan.FeatureScale).data<float>().ToArray();

        foreach (var (format, name) in new[] { ("pytorch", "torch.pt"), ("safetensors", "torch.safetensors") })
        {
            var path = Path.Combine(_run.Dir, name);
            var export = DigitsProcess.Run(_run.Dir, "cnn", "export", "--model", _run.Last, "--format", format, "--output", path);
            Assert.True(export.ExitCode == 0, export.ToString());
            var python = DigitsProcess.Python(DigitsProcess.InteropScript(), "digits", path, testData);
            Assert.True(python.ExitCode == 0, python.ToString());
            using var doc = JsonDocument.Parse(python.Stdout);
            var classes = doc.RootElement.GetProperty("classes").EnumerateArray().Select(c => c.GetInt64()).ToArray();
            var probabilities = doc.RootElement.GetProperty("probabilities").EnumerateArray().SelectMany(r => r.EnumerateArray().Select(p => p.GetSingle())).ToArray();
            Assert.Equal(1797, classes.Length);
            Assert.Equal(model.Predict(features * (float)Digits.DigitsCnn.Plan.FeatureScale).data<long>().ToArray(), classes);
            Assert.Equal(expected.Length, probabilities.Length);
            Assert.True(expected.Zip(probabilities).Max(p => Math.Abs(p.First - p.Second)) < 1e-5, $"{format}: probabilities differ");
        }
    }

    private string Optimized => Path.Combine(_run.Checkpoints, "optimized.bin");

    [Fact]
    public void Evaluate_OfTheOptimisedModel_ReproducesTheAccuracyTrainingPrinted()
    {
        // The Digits CNN's plan: half of Conv1's, Conv2's and Hidden's outputs cut, then the BatchNorms folded.
        var optimized = TrainingReport.Read(_run.ReportPath).GetSection<Optimization.OptimizationReport>("optimized")!;
        Assert.Equal(Optimized, optimized.ExportPath);
        Assert.Contains($"test accuracy {TrainingProgress.Percent(optimized.TestAccuracy!.Value)})", _run.Training.Stdout);

        var json = Path.Combine(_run.Dir, "eval-optimized.json");
        var run = DigitsProcess.Run(_run.Dir, "cnn", "evaluate", "--model", Optimized, "--report", json);
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("optimized.bin, the optimised model) on 1797 samples", run.Stdout);
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        Assert.Equal(optimized.TestAccuracy!.Value, doc.RootElement.GetProperty("accuracy").GetDouble(), 12);

        // predict agrees with it row by row.
        var output = Path.Combine(_run.Dir, "predictions-optimized.csv");
        var predict = DigitsProcess.Run(_run.Dir, "cnn", "predict", "--model", Optimized, "--data", DigitsProcess.DataFile("optdigits.tes"), "--output", output);
        Assert.True(predict.ExitCode == 0, predict.ToString());
        int correct = File.ReadLines(output).Skip(1).Count(l => l.Split(',')[0] == l.Split(',')[1]);
        Assert.Equal(optimized.TestAccuracy!.Value, correct / 1797.0, 12);
    }

    [Fact]
    public void OptimisedModel_LoadsWithItsCutAndFoldedLayers_AndExportsLoadBackTheSame()
    {
        using var model = Digits.DigitsCnn.Load(Optimized);
        var conv1 = Assert.IsType<TorchSharp.Modules.Conv2d>(model.GetLayer("Conv1"));
        var conv2 = Assert.IsType<TorchSharp.Modules.Conv2d>(model.GetLayer("Conv2"));
        Assert.Equal((16L, 16L, 32L), (conv1.out_channels, conv2.in_channels, conv2.out_channels));
        Assert.IsType<Optimization.FoldedBatchNorm>(model.GetLayer("Norm1"));
        Assert.IsType<Optimization.FoldedBatchNorm>(model.GetLayer("Norm2"));
        var hidden = Assert.IsType<TorchSharp.Modules.Linear>(model.GetLayer("Hidden"));
        var output = Assert.IsType<TorchSharp.Modules.Linear>(model.GetLayer("Output"));
        Assert.Equal((512L, 64L, 64L, 10L), (hidden.in_features, hidden.out_features, output.in_features, output.out_features));
        // Every tensor is the file's, bit for bit.
        var file = TorchSharpFormat.Load(Optimized);
        Assert.Equal(file.Select(t => t.Name), model.state_dict().Keys);
        foreach (var (name, tensor) in file)
            Assert.True(tensor.equal(model.state_dict()[name]).all().item<bool>(), name);

        var (features, _) = FeatureCsvForTests(DigitsProcess.DataFile("optdigits.tes"));
        var x = features * (float)Digits.DigitsCnn.Plan.FeatureScale;
        var expected = model.PredictProba(x).data<float>().ToArray();
        foreach (var (format, name) in new[] { ("pytorch", "optimized.pt"), ("safetensors", "optimized.safetensors") })
        {
            var path = Path.Combine(_run.Dir, name);
            var run = DigitsProcess.Run(_run.Dir, "cnn", "export", "--model", Optimized, "--format", format, "--output", path);
            Assert.True(run.ExitCode == 0, run.ToString());
            using var exported = Digits.DigitsCnn.Load(path);
            Assert.Equal(expected, exported.PredictProba(x).data<float>().ToArray());
        }
    }

    [Fact]
    public void Version_PrintsTheVersion_AndStartsNoTraining()
    {
        var dir = Directory.CreateTempSubdirectory("modeldsl-version-").FullName;
        try
        {
            var run = DigitsProcess.Run(dir, "--version");
            Assert.True(run.ExitCode == 0, run.ToString());
            Assert.StartsWith("Digits ", run.Stdout);
            Assert.Contains("DigitsCnn; ModelDsl ", run.Stdout);
            Assert.Empty(Directory.EnumerateFileSystemEntries(dir));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Help_ListsTheCommands()
    {
        var run = DigitsProcess.Run(_run.Dir, "cnn", "--help");
        Assert.Equal(0, run.ExitCode);
        foreach (var command in new[] { "train", "evaluate", "predict", "export", "lr-find", "--patience", "--header", "--label-column", "--version" })
            Assert.Contains(command, run.Stdout);
    }

    [Theory]
    [InlineData("evaluate", "--model", "{dir}/none.ckpt", "There is no model file")]
    [InlineData("export", "--format", "tflite", "--output", "{dir}/x.onnx", "tflite")]
    [InlineData("export", "--model", "{last}", "--output", "{dir}/x.pt", "--onnx-int8", "reduce-range", "--onnx-int8 applies to the onnx format only")]
    [InlineData("export", "--model", "{last}", "--output", "{dir}/x.bin", "--format is needed")]
    [InlineData("predict", "--model", "{last}", "--data", "{dir}/wide.csv", "wide.csv:1")]
    [InlineData("predict", "--model", "{last}", "--data", "{dir}/wide.csv", "--batch-size", "0", "--batch-size must be at least 1")]
    [InlineData("--patience", "-1", "--patience must be 0")]
    [InlineData("evaluate", "--model", "{dir}/evil.pt", "it refers to os.system, which is not part of a state dict")]
    public void BadCommandLine_IsOneClearLine_AndExitCode2(params string[] args)
    {
        File.WriteAllText(Path.Combine(_run.Dir, "wide.csv"), string.Join(",", Enumerable.Repeat("1", 70)) + "\n");
        // A hostile file: a pickle that would call os.system.
        using (var zip = new System.IO.Compression.ZipArchive(File.Create(Path.Combine(_run.Dir, "evil.pt")), System.IO.Compression.ZipArchiveMode.Create))
        using (var pkl = zip.CreateEntry("archive/data.pkl").Open())
            pkl.Write(System.Text.Encoding.Latin1.GetBytes("\u0080\u0002cos\nsystem\n(X\u0002\0\0\0hitR."));
        string expected = args[^1];
        var actual = args[..^1].Select(a => a.Replace("{dir}", _run.Dir).Replace("{last}", _run.Last)).ToArray();
        var run = DigitsProcess.Run(_run.Dir, new[] { "cnn" }.Concat(actual).ToArray());
        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.StartsWith("error: ", run.Stderr);
        Assert.Contains(expected, run.Stderr);
        Assert.DoesNotContain("   at ", run.Stderr);
    }

    [Fact]
    public void Patience_WithoutValidationData_IsAUsageError()
    {
        // The MLP's [Train] holds out no validation data (ValidationFraction = 0).
        var run = DigitsProcess.Run(_run.Dir, "mlp", "--patience", "2", "--checkpoint-dir", Path.Combine(_run.Dir, "mlp"));
        Assert.Equal(2, run.ExitCode);
        Assert.Contains("ValidationFraction = 0", run.Stderr);
    }

    [Fact]
    public void ExportOnnx_OfTheCheckpoint_RunsInOnnxRuntime_WithOurOutputs()
    {
        var path = Path.Combine(_run.Dir, "cnn.onnx");
        var run = DigitsProcess.Run(_run.Dir, "cnn", "export", "--model", _run.Last, "--output", path);   // format from the extension
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("(onnx, opset 17: input 'input', output 'output', batch dimension 'batch')", run.Stdout);

        using var model = Digits.DigitsCnn.Load(_run.Last);
        var (features, _) = FeatureCsvForTests(DigitsProcess.DataFile("optdigits.tes"));
        var x = features * (float)Digits.DigitsCnn.Plan.FeatureScale;
        using var ort = new Onnx.OrtRunner(File.ReadAllBytes(path));
        var logits = ort.Run(x);
        using (TorchSharp.torch.no_grad())
            Assert.True((model.call(x) - logits).abs().max().item<float>() <= 1e-4f);
        Assert.True((model.PredictProba(x) - TorchSharp.torch.softmax(logits, 1)).abs().max().item<float>() <= 1e-4f);
        Assert.Equal(model.Predict(x).data<long>().ToArray(), logits.argmax(1).data<long>().ToArray());
    }

    [Fact]
    public void ExportOnnx_OfTheOptimisedModel_CutFoldedAndInt8_PredictsTheSameClassesInOnnxRuntime()
    {
        var (features, _) = FeatureCsvForTests(DigitsProcess.DataFile("optdigits.tes"));
        var x = features * (float)Digits.DigitsCnn.Plan.FeatureScale;

        // The main job's optimised model (channels cut, BatchNorms folded) through the CLI.
        var path = Path.Combine(_run.Dir, "optimized.onnx");
        var run = DigitsProcess.Run(_run.Dir, "cnn", "export", "--model", Optimized, "--format", "onnx", "--output", path);
        Assert.True(run.ExitCode == 0, run.ToString());
        using (var optimised = Digits.DigitsCnn.Load(Optimized))
        using (var ort = new Onnx.OrtRunner(File.ReadAllBytes(path)))
            Assert.Equal(optimised.Predict(x).data<long>().ToArray(), ort.Run(x).argmax(1).data<long>().ToArray());

        // Its Linear layers in dynamic int8 on top (what a [Quantize] pass adds), through the API: the same classes
        // on the whole test set. Both quantise each call's activations as one tensor: ORT runs the batches Predict uses.
        using var model = Digits.DigitsCnn.Load(Optimized);
        var host = (ModelDsl.ILayerHost)model;
        foreach (var name in new[] { "Hidden", "Output" })
            host.ReplaceLayer(name, new ModelDsl.Runtime.Quantization.DynamicQuantizedLinear((TorchSharp.Modules.Linear)host.GetLayer(name), QuantizeMode.DynamicInt8));
        var signature = ModelDsl.Runtime.Inference.ModelSignature.FromPlan(Digits.DigitsCnn.Plan);
        var int8Path = Path.Combine(_run.Dir, "optimized-int8.onnx");
        ModelDsl.Runtime.Onnx.OnnxExport.Save(model, signature, int8Path);
        long n = x.shape[0];
        int batch = ModelDsl.Runtime.Inference.Predictor.DefaultBatchSize;
        using (var ort = new Onnx.OrtRunner(File.ReadAllBytes(int8Path)))
        {
            var theirs = TorchSharp.torch.cat(Enumerable.Range(0, (int)((n + batch - 1) / batch))
                .Select(i => ort.Run(x.narrow(0, i * batch, Math.Min(batch, n - i * batch))).argmax(1)).ToArray(), 0);
            Assert.Equal(model.Predict(x).data<long>().ToArray(), theirs.data<long>().ToArray());
        }

        // OnnxInt8Activations.DynamicQuantizeLinear writes ONNX's own activation quantisation instead.
        var fast = ModelDsl.Runtime.Onnx.Proto.ModelProto.Parser.ParseFrom(
            ModelDsl.Runtime.Onnx.OnnxExport.ToBytes(model, signature, ModelDsl.Runtime.Onnx.OnnxInt8Activations.DynamicQuantizeLinear)).Graph;
        Assert.Equal(2, fast.Node.Count(n => n.OpType == "DynamicQuantizeLinear"));
        Assert.Equal(0, ModelDsl.Runtime.Onnx.Proto.ModelProto.Parser.ParseFrom(File.ReadAllBytes(int8Path)).Graph.Node.Count(n => n.OpType == "DynamicQuantizeLinear"));
    }

    [Fact]
    public void ExportOnnx_OfTheOptimisedModelInStaticInt8_IsQdq_AndPredictsTheSameClassesInOnnxRuntime()
    {
        var (features, _) = FeatureCsvForTests(DigitsProcess.DataFile("optdigits.tes"));
        var x = features * (float)Digits.DigitsCnn.Plan.FeatureScale;
        var (train, _) = FeatureCsvForTests(DigitsProcess.DataFile("optdigits.tra"));
        var calibration = (train * (float)Digits.DigitsCnn.Plan.FeatureScale).split(64).Take(8).ToList();

        // The main job's optimised model (cut, folded) in static int8, as [Quantize(QuantizeMode.StaticInt8)] makes it.
        using var model = Digits.DigitsCnn.Load(Optimized);
        Assert.Equal(new[] { "Conv1", "Conv2", "Hidden", "Output" }, ModelDsl.Runtime.Quantization.Quantize.Static(model, calibration));
        var signature = ModelDsl.Runtime.Inference.ModelSignature.FromPlan(Digits.DigitsCnn.Plan);
        byte[] onnx = ModelDsl.Runtime.Onnx.OnnxExport.ToBytes(model, signature);
        var graph = ModelDsl.Runtime.Onnx.Proto.ModelProto.Parser.ParseFrom(onnx).Graph;
        // QDQ: each layer's input and output through QuantizeLinear/DequantizeLinear, its int8 weight through DequantizeLinear.
        Assert.Equal(8, graph.Node.Count(n => n.OpType == "QuantizeLinear"));
        Assert.Equal(12, graph.Node.Count(n => n.OpType == "DequantizeLinear"));
        Assert.Equal(2, graph.Node.Count(n => n.OpType == "Conv"));
        Assert.Equal(new[] { "Conv1_relu", "Conv2_relu", "Hidden_relu" }, graph.Node.Where(n => n.OpType == "Relu" && n.Output[0].EndsWith("_relu", StringComparison.Ordinal)).Select(n => n.Output[0]));
        using var ort = new Onnx.OrtRunner(onnx);
        var ours = model.Predict(x).data<long>().ToArray();
        var theirs = ort.Run(x).argmax(1).data<long>().ToArray();
        Assert.Equal(ours, theirs);
        foreach (var batch in calibration) batch.Dispose();
    }

    private static (TorchSharp.torch.Tensor Features, long[] Labels) FeatureCsvForTests(string path)
    {
        var rows = File.ReadAllLines(path).Where(l => l.Length > 0).Select(l => l.Split(',').Select(c => float.Parse(c, CultureInfo.InvariantCulture)).ToArray()).ToArray();
        var features = TorchSharp.torch.tensor(rows.SelectMany(r => r.Take(64)).ToArray(), new long[] { rows.Length, 1, 8, 8 });
        return (features, rows.Select(r => (long)r[64]).ToArray());
    }
}

/// <summary>Early stopping and the best checkpoint, end to end: a run that must stop early, and what it leaves.</summary>
[Trait("Category", "EndToEnd")]
[Collection(GlobalTorchStateCollection.Name)]
public sealed class EarlyStoppingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-patience-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public void ValidationLossThatStopsImproving_StopsTraining_AndBestCkptHoldsTheBestEpoch()
    {
        // 200 rows (20 for validation) and a high constant learning rate: the validation loss soon stops improving.
        var data = Path.Combine(_dir, "tiny.csv");
        File.WriteAllLines(data, File.ReadLines(DigitsProcess.DataFile("optdigits.tra")).Take(200));
        var report = Path.Combine(_dir, "report.json");
        var checkpoints = Path.Combine(_dir, "ckpt");
        var run = DigitsProcess.Run(_dir, "cnn", "--data", data, "--epochs", "30", "--patience", "2", "--lr", "0.02",
            "--checkpoint-dir", checkpoints, "--report", report, "--plain", "--threads", "1");
        Assert.True(run.ExitCode == 0, run.ToString());

        var r = TrainingReport.Read(report);
        Assert.Equal(TrainingReport.StoppedEarly, r.StopReason);
        Assert.True(r.History.Count < 30, $"ran {r.History.Count} epochs");
        var losses = r.History.Select(h => h.ValLoss!.Value).ToArray();
        int best = Array.IndexOf(losses, losses.Min()) + 1;
        Assert.Equal(best, r.BestEpoch);
        Assert.Equal(losses.Min(), r.BestValLoss);
        // Patience 2: it stopped exactly two epochs after the best one, and no epoch in between improved.
        Assert.Equal(best + 2, r.History.Count);
        Assert.Contains($"Early stopping after epoch {best + 2}", run.Stdout);

        var bestState = Checkpoint.ReadState(Path.Combine(checkpoints, Checkpoint.BestFileName));
        Assert.Equal(best, bestState.Epoch);
        Assert.Equal(r.History.Count, Checkpoint.ReadState(Path.Combine(checkpoints, Checkpoint.FileName)).Epoch);

        // The best checkpoint evaluates to the validation loss recorded for its epoch? Its weights are that epoch's:
        // loading it gives a model that differs from the last checkpoint's.
        using var fromBest = Digits.DigitsCnn.Load(Path.Combine(checkpoints, Checkpoint.BestFileName));
        using var fromLast = Digits.DigitsCnn.Load(Path.Combine(checkpoints, Checkpoint.FileName));
        Assert.False(fromBest.Output.weight!.equal(fromLast.Output.weight!).all().item<bool>());

        // The final lines name both checkpoints with their epochs and figures, and which one the commands use.
        string lastPath = Path.Combine(checkpoints, Checkpoint.FileName), bestPath = Path.Combine(checkpoints, Checkpoint.BestFileName);
        Assert.Contains($"checkpoint: {lastPath} (final, epoch {r.History.Count}, validation loss {TrainingProgress.Format(losses[^1])}, " +
                        $"validation accuracy {TrainingProgress.Percent(r.History[^1].ValAccuracy!.Value)}, test accuracy {TrainingProgress.Percent(r.TestAccuracy!.Value)})\n", run.Stdout);
        var bestLine = System.Text.RegularExpressions.Regex.Match(run.Stdout,
            $@"best: {System.Text.RegularExpressions.Regex.Escape(bestPath)} \(epoch {best}, validation loss {TrainingProgress.Format(losses.Min())}, validation accuracy [0-9.]+%, test accuracy ([0-9.]+%); stopped early\); evaluate, predict and export take it with --model");
        Assert.True(bestLine.Success, run.Stdout);

        // evaluate (by default the best checkpoint) says which epoch it scored, and gets the accuracy announced for it.
        var evaluate = DigitsProcess.Run(_dir, "cnn", "evaluate", "--model", bestPath);
        Assert.True(evaluate.ExitCode == 0, evaluate.ToString());
        Assert.Contains($"({bestPath}, epoch {best}, the lowest validation loss) on 1797 samples", evaluate.Stdout);
        Assert.Contains($"accuracy {bestLine.Groups[1].Value}\n", evaluate.Stdout);
    }
}

/// <summary>Runs the Digits sample (built with the tests) and Python as real processes.</summary>
public static class DigitsProcess
{
    public static ProcessResult Run(string workingDirectory, params string[] args) => DigitsProgram.Run(workingDirectory, args);

    public static ProcessResult Python(params string[] args) => DigitsProgram.RunProgram("/usr/bin/python3", Path.GetTempPath(), args);

    public static bool HasPyTorch() => File.Exists("/usr/bin/python3") && Python("-c", "import torch").ExitCode == 0;

    public static string InteropScript() => Path.Combine(DigitsProgram.RepoRoot(), "tests", "ModelDsl.Runtime.Tests", "Interop", "pytorch_interop.py");

    public static string DataFile(string name) => Path.Combine(DigitsProgram.RepoRoot(), "samples", "Digits", "data", name);
}
