using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Text.Json;
using System.Threading;
using ModelDsl.Runtime.Training;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// The generated trainer of the Digits sample, run as a real process: accuracy, loss going down, resume after a
/// real kill, corrupt checkpoints, bad command lines and divergence.
/// </summary>
[Trait("Category", "EndToEnd")]
public sealed class TrainingEndToEndTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-e2e-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public void MainJob_ReachesTheDeclaredAccuracy_AndWritesReportCurvesAndCheckpoint()
    {
        var report = Path.Combine(_dir, "report.json");
        var run = Digits("--report", report, "--checkpoint-dir", Path.Combine(_dir, "ckpt"), "--plain");
        Assert.True(run.ExitCode == 0, run.ToString());

        using var json = JsonDocument.Parse(File.ReadAllText(report));
        var root = json.RootElement;
        Assert.Equal("DigitsCnn", root.GetProperty("model").GetString());
        Assert.Equal(20, root.GetProperty("epochs").GetInt32());
        // The bar for the main job; known results on optdigits: small MLPs ~97%, CNNs higher.
        Assert.True(root.GetProperty("test_accuracy").GetDouble() >= 0.97, run.Stdout);
        Assert.Equal(DigitsCnnParameters, root.GetProperty("param_count").GetInt64());
        Assert.True(root.GetProperty("param_l2").GetDouble() > 0);
        Assert.Equal(20, root.GetProperty("history").GetArrayLength());
        Assert.True(new FileInfo(Path.ChangeExtension(report, ".png")).Length > 1000);
        Assert.True(File.Exists(Path.Combine(_dir, "ckpt", Checkpoint.FileName)));

        // The declared plan ran: structured pruning of both convolutions and Hidden + fine-tune, BatchNorms folded, with
        // the targets (size, accuracy; the speed-up is measured in docs/benchmarks.md, not asserted on a shared machine).
        var optimized = root.GetProperty("optimized");
        Assert.True(optimized.GetProperty("size_ratio").GetDouble() <= 0.30, optimized.ToString());
        double before = optimized.GetProperty("test_accuracy_before").GetDouble(), after = optimized.GetProperty("test_accuracy").GetDouble();
        Assert.True(after >= before - 0.01, $"test accuracy {before:P2} -> {after:P2}");
        Assert.Equal(optimized.GetProperty("param_count_after_compile_time").GetInt64(), optimized.GetProperty("param_count_after").GetInt64());
        Assert.True(File.Exists(Path.Combine(_dir, "ckpt", "optimized.bin")));
        Assert.Equal(new[] { "Norm1", "Norm2" }, optimized.GetProperty("folded_batch_norms").EnumerateArray().Select(n => n.GetString()));
    }

    // conv1 1*32*9+32, bn 64, conv2 32*64*9+64, bn 128, linear 1024*128+128, linear 128*10+10.
    private const long DigitsCnnParameters = 320 + 64 + 18496 + 128 + 131200 + 1290;

    [Fact]
    public void TrainingLoss_GoesDown()
    {
        var report = Path.Combine(_dir, "mlp.json");
        var run = Digits("mlp", "--epochs", "3", "--report", report, "--checkpoint-dir", Path.Combine(_dir, "ckpt"));
        Assert.True(run.ExitCode == 0, run.ToString());
        var history = TrainingReport.Read(report).History;
        Assert.Equal(3, history.Count);
        Assert.True(history[2].TrainLoss < history[0].TrainLoss * 0.6, $"{history[0].TrainLoss} -> {history[2].TrainLoss}");
    }

    [Fact]
    public void RunKilledMidway_ThenResumed_EndsWithExactlyTheWeightsOfAnUninterruptedRun()
    {
        string[] plan = { "mlp", "--epochs", "6", "--threads", "1", "--plain" };
        var whole = Path.Combine(_dir, "whole");
        var killed = Path.Combine(_dir, "killed");

        var uninterrupted = Digits(plan.Concat(new[] { "--checkpoint-dir", whole }).ToArray());
        Assert.True(uninterrupted.ExitCode == 0, uninterrupted.ToString());

        // Start the same run, kill it (SIGKILL) as soon as its first checkpoint exists, then resume it.
        var checkpoint = Path.Combine(killed, Checkpoint.FileName);
        int epochAtKill = RunUntilFirstCheckpointThenKill(plan.Concat(new[] { "--checkpoint-dir", killed }).ToArray(), checkpoint);
        Assert.InRange(epochAtKill, 1, 5);

        var resumed = Digits(plan.Concat(new[] { "--checkpoint-dir", killed, "--resume" }).ToArray());
        Assert.True(resumed.ExitCode == 0, resumed.ToString());
        Assert.Contains($"after epoch {epochAtKill}", resumed.Stdout);

        var a = Checkpoint.ReadState(Path.Combine(whole, Checkpoint.FileName));
        var b = Checkpoint.ReadState(checkpoint);
        Assert.Equal(6, b.Epoch);
        Assert.Equal(a.Step, b.Step);
        Assert.Equal(a.History.Select(h => h.TrainLoss), b.History.Select(h => h.TrainLoss));
        AssertSameWeights(Path.Combine(whole, Checkpoint.FileName), checkpoint);
    }

    [Fact]
    public void DeterministicRuns_AreBitIdentical_AndWriteTensorBoardEvents()
    {
        var first = Path.Combine(_dir, "first");
        var second = Path.Combine(_dir, "second");
        var events = Path.Combine(_dir, "events");
        var a = Digits("mlp", "--epochs", "2", "--deterministic", "--checkpoint-dir", first, "--tensorboard", events);
        var b = Digits("mlp", "--epochs", "2", "--deterministic", "--checkpoint-dir", second);
        Assert.True(a.ExitCode == 0, a.ToString());
        Assert.True(b.ExitCode == 0, b.ToString());
        AssertSameWeights(Path.Combine(first, Checkpoint.FileName), Path.Combine(second, Checkpoint.FileName));
        Assert.Contains(Directory.EnumerateFiles(events, "*", SearchOption.AllDirectories), f => Path.GetFileName(f).Contains("tfevents", StringComparison.Ordinal) && new FileInfo(f).Length > 0);
    }

    [Fact]
    public void CorruptCheckpoint_IsAClearError_NamingTheFile()
    {
        var ckpt = Path.Combine(_dir, "ckpt");
        Directory.CreateDirectory(ckpt);
        var path = Path.Combine(ckpt, Checkpoint.FileName);
        File.WriteAllBytes(path, new byte[] { 1, 2, 3, 4, 5, 6, 7, 8, 9 });

        var run = Digits("mlp", "--epochs", "1", "--checkpoint-dir", ckpt, "--resume");
        Assert.Equal(2, run.ExitCode);
        Assert.Contains(path, run.Stderr);
        AssertNoStackTrace(run);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8, 9 }, File.ReadAllBytes(path));
    }

    [Fact]
    public void CheckpointOfAnotherPlan_IsRefused_SayingWhatDiffers()
    {
        var ckpt = Path.Combine(_dir, "ckpt");
        Assert.Equal(0, Digits("mlp", "--epochs", "1", "--checkpoint-dir", ckpt).ExitCode);
        var run = Digits("mlp", "--epochs", "2", "--lr", "0.01", "--checkpoint-dir", ckpt, "--resume");
        Assert.Equal(2, run.ExitCode);
        Assert.Contains("'LearningRate'", run.Stderr);
        AssertNoStackTrace(run);
    }

    [Theory]
    [InlineData("--bogus")]
    [InlineData("--epochs", "0")]
    [InlineData("--epochs", "many")]
    [InlineData("--batch-size", "-3")]
    [InlineData("--lr", "-1")]
    [InlineData("--device", "tpu")]
    [InlineData("--device", "cuda")]
    [InlineData("--data", "/no/such/file.csv")]
    [InlineData("--report", "/proc/report.json")]
    [InlineData("--tensorboard", "/proc/events")]
    public void BadCommandLine_IsOneClearLine_AndExitCode2(params string[] args)
    {
        var run = Digits(new[] { "mlp" }.Concat(args).Append("--checkpoint-dir").Append(Path.Combine(_dir, "ckpt")).ToArray());
        Assert.Equal(2, run.ExitCode);
        Assert.StartsWith("error: ", run.Stderr);
        AssertNoStackTrace(run);
    }

    [Fact]
    public void LabelBeyondTheModelsClasses_IsAClearDataError()
    {
        var data = Path.Combine(_dir, "labels.csv");
        File.WriteAllLines(data, Enumerable.Range(0, 20).Select(i => string.Join(",", Enumerable.Repeat("1", 64)) + "," + (i == 7 ? 12 : i % 10)));
        var run = Digits("mlp", "--data", data, "--checkpoint-dir", Path.Combine(_dir, "ckpt"));
        Assert.Equal(2, run.ExitCode);
        Assert.Contains("labels.csv:8: class label 12 is out of range", run.Stderr);
        AssertNoStackTrace(run);
    }

    [Fact]
    public void Help_ListsTheOptions()
    {
        var run = Digits("mlp", "--help");
        Assert.Equal(0, run.ExitCode);
        foreach (var option in new[] { "--epochs", "--batch-size", "--lr", "--seed", "--data", "--checkpoint-dir", "--resume", "--report", "--device", "--threads", "--deterministic", "--tensorboard" })
            Assert.Contains(option, run.Stdout);
        // The sample's choice of model, and --deterministic as docs/training.md describes it (TorchSharp has no
        // deterministic-kernels switch).
        Assert.Contains("Models (an optional first argument", run.Stdout);
        Assert.Contains("mlp  train DigitsMlp", run.Stdout);
        // One usage block (issue 19: the program's and the model's were two).
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(run.Stdout, "Usage:"));
        Assert.DoesNotContain("deterministic kernels", run.Stdout);
        Assert.Contains("1 thread", run.Stdout);
    }

    [Fact]
    public void NaNLoss_StopsTheRun_AndKeepsTheLastGoodCheckpoint()
    {
        // A run of the declared 40 epochs, killed after its first checkpoint: the same plan can be resumed.
        var ckpt = Path.Combine(_dir, "ckpt");
        int goodEpoch = RunUntilFirstCheckpointThenKill(new[] { "mlp", "--checkpoint-dir", ckpt }, Path.Combine(ckpt, Checkpoint.FileName));
        var good = File.ReadAllBytes(Path.Combine(ckpt, Checkpoint.FileName));

        // Same plan, every feature poisoned with float32's largest values: activations overflow, the loss turns NaN.
        var source = Path.Combine(RepoRoot(), "samples", "Digits", "data", "optdigits.tra");
        var poisoned = Path.Combine(_dir, "poisoned.csv");
        var lines = File.ReadAllLines(source)
            .Select(l => string.Join(",", Enumerable.Repeat("3e38", 64)) + l.Substring(l.LastIndexOf(',')))
            .ToArray();
        File.WriteAllLines(poisoned, lines);

        var run = Digits("mlp", "--checkpoint-dir", ckpt, "--resume", "--data", poisoned);
        Assert.True(run.ExitCode == 3, run.ToString());
        Assert.Contains("loss became", run.Stderr);
        Assert.Contains($"at epoch {goodEpoch + 1}, step", run.Stderr);
        Assert.Contains($"last good checkpoint (epoch {goodEpoch})", run.Stderr);
        AssertNoStackTrace(run);
        Assert.Equal(good, File.ReadAllBytes(Path.Combine(ckpt, Checkpoint.FileName)));
    }

    /// <summary>Starts a run, SIGKILLs it as soon as its first checkpoint exists, returns the checkpoint's epoch.</summary>
    private int RunUntilFirstCheckpointThenKill(string[] args, string checkpoint)
    {
        using (var process = Start(args))
        {
            var deadline = DateTime.UtcNow.AddMinutes(3);
            while (!File.Exists(checkpoint) && !process.HasExited && DateTime.UtcNow < deadline) Thread.Sleep(20);
            Assert.True(File.Exists(checkpoint), "no checkpoint appeared");
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
        }
        return Checkpoint.ReadState(checkpoint).Epoch;
    }

    private static void AssertSameWeights(string first, string second)
    {
        var a = ReadWeights(first);
        var b = ReadWeights(second);
        Assert.Equal(a.Keys.OrderBy(k => k), b.Keys.OrderBy(k => k));
        foreach (var key in a.Keys)
            Assert.True(a[key].SequenceEqual(b[key]), $"parameter {key} differs");
    }

    private static Dictionary<string, float[]> ReadWeights(string path) => DigitsProgram.Weights<Digits.DigitsMlp>(path);

    private static void AssertNoStackTrace(ProcessResult run)
    {
        Assert.DoesNotContain("   at ", run.Stderr);
        Assert.DoesNotContain("   at ", run.Stdout);
        Assert.DoesNotContain("Exception", run.Stderr);
    }

    private ProcessResult Digits(params string[] args) => DigitsProgram.Run(_dir, args);

    private Process Start(string[] args) => DigitsProgram.Start(_dir, args);

    internal static string RepoRoot() => DigitsProgram.RepoRoot();
}
