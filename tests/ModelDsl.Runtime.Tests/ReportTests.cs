using System.Collections.Generic;
using System.IO;
using System.Text.Json;
using System.Text.Json.Nodes;
using ModelDsl.Runtime.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>The training report's JSON (exact snake_case keys, round trip, sections), ParameterL2, and the curves PNG.</summary>
public sealed class ReportTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "modeldsl-report-tests", Guid.NewGuid().ToString("N"));

    public ReportTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private static List<EpochMetrics> History(bool classification = true) => new()
    {
        new() { Epoch = 1, TrainLoss = 2.25, TrainAccuracy = classification ? 0.5 : double.NaN, ValLoss = 2.0, ValAccuracy = classification ? 0.625 : null, LearningRate = 0.01, Seconds = 3.5, Samples = 900 },
        new() { Epoch = 2, TrainLoss = 1.5, TrainAccuracy = classification ? 0.75 : double.NaN, ValLoss = 1.25, ValAccuracy = classification ? 0.8125 : null, LearningRate = 0.005, Seconds = 3.25, Samples = 900 },
        new() { Epoch = 3, TrainLoss = 1.125, TrainAccuracy = classification ? 0.875 : double.NaN, ValLoss = null, ValAccuracy = null, LearningRate = 0.0025, Seconds = 3, Samples = 900 },
    };

    private static TrainingReport Report() => new()
    {
        Model = "Digits",
        WorldSize = 1,
        GlobalBatchSize = 64,
        Epochs = 3,
        Steps = 45,
        TrainSeconds = 9.75,
        SamplesPerSecond = 276.9230769230769,
        FinalTrainLoss = 1.125,
        ValLoss = null,
        TestAccuracy = 0.9375,
        ParamCount = 12345,
        ParamL2 = 17.5,
        History = History(),
    };

    [Fact]
    public void Json_HasExactlyTheSnakeCaseKeys()
    {
        string path = Path.Combine(_dir, "report.json");
        Report().Write(path);

        var root = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        Assert.Equal(
            new[] { "schema_version", "model", "world_size", "global_batch_size", "epochs", "steps", "train_seconds", "samples_per_second", "tokens_per_second",
                    "final_train_loss", "val_loss", "test_accuracy", "param_count", "param_l2", "best_epoch", "best_val_loss", "stop_reason", "restarts", "precision", "history" },
            root.Select(p => p.Key));
        Assert.Equal(1, (int)root["schema_version"]!);
        Assert.Equal("Digits", (string)root["model"]!);
        Assert.Null(root["val_loss"]);
        Assert.Equal(0.9375, (double)root["test_accuracy"]!);

        var epoch = root["history"]!.AsArray()[0]!.AsObject();
        Assert.Equal(
            new[] { "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds", "samples" },
            epoch.Select(p => p.Key));
        Assert.Equal(900, (long)epoch["samples"]!);
        Assert.Null(root["history"]!.AsArray()[2]!["val_loss"]);
        Assert.Contains("\n  \"model\": \"Digits\"", File.ReadAllText(path));
    }

    [Fact]
    public void Json_RoundTrips()
    {
        string path = Path.Combine(_dir, "sub", "report.json");
        var report = Report();
        report.Write(path);
        var read = TrainingReport.Read(path);

        Assert.Equal(JsonSerializer.Serialize(report), JsonSerializer.Serialize(read));
        Assert.Equal(report.History, read.History);
        Assert.Equal(0.9375, read.TestAccuracy);
        Assert.Null(read.ValLoss);
        Assert.Equal(12345, read.ParamCount);
        Assert.DoesNotContain(Directory.GetFiles(Path.GetDirectoryName(path)!), f => f.Contains(".tmp-", StringComparison.Ordinal));
    }

    [Fact]
    public void NaN_AccuracyIsNull_AndNaNLossSurvives()
    {
        string path = Path.Combine(_dir, "regression.json");
        var report = Report();
        report.History = History(classification: false);
        report.FinalTrainLoss = double.NaN;
        report.Write(path);

        var root = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        Assert.Null(root["history"]![0]!["train_accuracy"]);
        Assert.True(root["history"]![0]!.AsObject().ContainsKey("train_accuracy"));
        Assert.Equal("NaN", (string)root["final_train_loss"]!);

        var read = TrainingReport.Read(path);
        Assert.True(double.IsNaN(read.History[0].TrainAccuracy));
        Assert.True(double.IsNaN(read.FinalTrainLoss));
    }

    private sealed record Distributed(
        [property: System.Text.Json.Serialization.JsonPropertyName("backend")] string Backend,
        [property: System.Text.Json.Serialization.JsonPropertyName("ranks")] int Ranks);

    [Fact]
    public void Sections_AreWrittenAtTopLevel_AndSurviveAReadWriteCycle()
    {
        string path = Path.Combine(_dir, "report.json");
        var report = Report();
        report.SetSection("distributed", new Distributed("gloo", 4));
        report.Write(path);

        var root = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        Assert.Equal("gloo", (string)root["distributed"]!["backend"]!);
        Assert.Equal("history", root.Select(p => p.Key).Reverse().Skip(1).First());

        // A reader that knows nothing of the section keeps it when it writes the report again.
        var read = TrainingReport.Read(path);
        Assert.Equal(new Distributed("gloo", 4), read.GetSection<Distributed>("distributed"));
        Assert.Null(read.GetSection<Distributed>("optimization"));
        string again = Path.Combine(_dir, "again.json");
        read.Write(again);
        Assert.Equal(File.ReadAllText(path), File.ReadAllText(again));

        Assert.Throws<ArgumentException>(() => report.SetSection("history", 1));
    }

    [Fact]
    public void Read_NamesABadFile()
    {
        string path = Path.Combine(_dir, "broken.json");
        File.WriteAllText(path, "{ \"model\": ");
        var e = Assert.Throws<InvalidDataException>(() => TrainingReport.Read(path));
        Assert.StartsWith($"{path} is not a valid training report", e.Message);
    }

    [Fact]
    public void ParameterL2_MatchesAHandComputedValue()
    {
        using var linear = nn.Linear(2, 2);
        using (no_grad())
        {
            linear.weight!.copy_(tensor(new float[] { 1, -2, 3, 4 }).reshape(2, 2));
            linear.bias!.copy_(tensor(new float[] { 0.5f, -0.5f }));
        }
        // 1 + 4 + 9 + 16 + 0.25 + 0.25
        Assert.Equal(Math.Sqrt(30.5), TrainingReport.ParameterL2(linear), 12);
        Assert.Equal(6, TrainingReport.ParameterCount(linear));

        // Buffers do not count; float64 accumulation keeps tiny values.
        using var norm = nn.BatchNorm1d(3);
        Assert.Equal(Math.Sqrt(3), TrainingReport.ParameterL2(norm), 12);
    }

    private static readonly byte[] PngSignature = { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A };

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Curves_AreAPng(bool classification)
    {
        string path = Path.Combine(_dir, "curves", classification ? "classification.png" : "regression.png");
        TrainingCurves.Save(path, History(classification));

        byte[] png = File.ReadAllBytes(path);
        Assert.True(png.Length > 1000, $"only {png.Length} bytes");
        Assert.Equal(PngSignature, png[..8]);
        Assert.DoesNotContain(Directory.GetFiles(Path.GetDirectoryName(path)!), f => f.Contains(".tmp-", StringComparison.Ordinal));
    }

    [Fact]
    public void Curves_OfNoEpochs_AreRefused()
    {
        string path = Path.Combine(_dir, "empty.png");
        Assert.Throws<ArgumentException>(() => TrainingCurves.Save(path, new List<EpochMetrics>()));
        Assert.False(TrainingCurves.TrySave(path, new List<EpochMetrics>(), out var error));
        Assert.Contains("no epochs", error);
        Assert.False(File.Exists(path));
    }
}
