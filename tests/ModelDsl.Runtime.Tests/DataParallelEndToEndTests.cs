using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using ModelDsl.Runtime.Training;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// The Digits sample's generated trainer at world size 2 over real Open MPI (the trainer starts mpirun itself): the
/// single process is the oracle, ranks end in sync, and a killed rank ends the job with a resumable checkpoint.
/// </summary>
[Trait("Category", "EndToEnd")]
public sealed class DataParallelEndToEndTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-ddp-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    /// <summary>
    /// 1,280 rows (the MLP holds out no validation set): 20 global batches of 64, so every batch is whole and the
    /// sampler pads nothing — the rule under which world size N at batch b equals one process at batch N·b.
    /// </summary>
    private string EvenData()
    {
        var path = Path.Combine(_dir, "even.csv");
        File.WriteAllLines(path, File.ReadLines(Path.Combine(DigitsProgram.RepoRoot(), "samples", "Digits", "data", "optdigits.tra")).Take(1280));
        return path;
    }

    [Fact]
    public void MlpAtWorldSizeTwo_EqualsOneProcessWithTheGlobalBatch()
    {
        string data = EvenData();
        string[] common = { "mlp", "--data", data, "--test-data", "", "--epochs", "2", "--deterministic", "--threads", "1", "--plain" };
        var single = DigitsProgram.Run(_dir, common.Concat(new[] { "--batch-size", "64", "--checkpoint-dir", "one", "--report", "one.json" }).ToArray());
        Assert.True(single.ExitCode == 0, single.ToString());
        var parallel = DigitsProgram.Run(_dir, common.Concat(new[] { "--batch-size", "32", "--world-size", "2", "--checkpoint-dir", "two", "--report", "two.json" }).ToArray());
        Assert.True(parallel.ExitCode == 0, parallel.ToString());

        var one = TrainingReport.Read(Path.Combine(_dir, "one.json"));
        var two = TrainingReport.Read(Path.Combine(_dir, "two.json"));
        Assert.Equal(2, two.WorldSize);
        Assert.Equal(64, two.GlobalBatchSize);
        Assert.Equal(one.Steps, two.Steps);
        Assert.True(Math.Abs(one.ParamL2 - two.ParamL2) <= 1e-5 * one.ParamL2, $"param L2 {one.ParamL2} vs {two.ParamL2}");

        var a = Weights(Path.Combine(_dir, "one", Checkpoint.FileName));
        var b = Weights(Path.Combine(_dir, "two", Checkpoint.FileName));
        foreach (var (name, expected) in a)
        {
            double relative = RelativeDifference(expected, b[name]);
            Assert.True(relative <= 1e-5, $"{name}: relative difference {relative:E2}");
        }
        // Rank 0 alone prints: one line per epoch, not one per rank.
        Assert.Equal(2, parallel.Stdout.Split('\n').Count(l => l.StartsWith("epoch ", StringComparison.Ordinal)));
    }

    [Fact]
    public void CnnWithSyncBatchNorm_AtWorldSizeTwo_EqualsOneProcess_AndPerRankStatisticsDoNot()
    {
        // 142 rows: the CNN holds out round(14.2) = 14, leaving 128 = two global batches of 64. Two steps, because
        // the sample's AdamW turns a gradient that is zero in exact arithmetic (the biases of the convolutions that
        // BatchNorm follows, which it cancels) into a full ±lr step whose sign is float noise; after many steps that
        // noise reaches every weight. Those two biases are left out of the comparison for that reason.
        var data = Path.Combine(_dir, "small.csv");
        File.WriteAllLines(data, File.ReadLines(Path.Combine(DigitsProgram.RepoRoot(), "samples", "Digits", "data", "optdigits.tra")).Take(142));
        string[] common = { "--data", data, "--test-data", "", "--epochs", "1", "--deterministic", "--threads", "1", "--plain" };
        var single = DigitsProgram.Run(_dir, common.Concat(new[] { "--batch-size", "64", "--checkpoint-dir", "one" }).ToArray());
        Assert.True(single.ExitCode == 0, single.ToString());
        var synced = DigitsProgram.Run(_dir, common.Concat(new[] { "--batch-size", "32", "--world-size", "2", "--sync-batchnorm", "--checkpoint-dir", "sync" }).ToArray());
        Assert.True(synced.ExitCode == 0, synced.ToString());
        var perRank = DigitsProgram.Run(_dir, common.Concat(new[] { "--batch-size", "32", "--world-size", "2", "--checkpoint-dir", "local" }).ToArray());
        Assert.True(perRank.ExitCode == 0, perRank.ToString());

        string[] cancelledByBatchNorm = { "Conv1.bias", "Conv2.bias" };
        var a = Weights<Digits.DigitsCnn>(Path.Combine(_dir, "one", Checkpoint.FileName));
        var b = Weights<Digits.DigitsCnn>(Path.Combine(_dir, "sync", Checkpoint.FileName));
        var c = Weights<Digits.DigitsCnn>(Path.Combine(_dir, "local", Checkpoint.FileName));
        foreach (var (name, expected) in a.Where(p => !cancelledByBatchNorm.Contains(p.Key)))
        {
            double relative = RelativeDifference(expected, b[name]);
            Assert.True(relative <= 1e-5, $"{name}: relative difference {relative:E2} with SyncBatchNorm");
        }
        // Without SyncBatchNorm each rank normalises with its own half-batch: the run really is different.
        double worst = a.Where(p => !cancelledByBatchNorm.Contains(p.Key)).Max(p => RelativeDifference(p.Value, c[p.Key]));
        Assert.True(worst > 1e-4, $"per-rank BatchNorm statistics came within {worst:E2} of the single process");
    }

    private static double RelativeDifference(float[] expected, float[] actual)
    {
        double norm = Math.Sqrt(expected.Sum(v => (double)v * v));
        double diff = Math.Sqrt(expected.Zip(actual, (x, y) => ((double)x - y) * ((double)x - y)).Sum());
        return diff / Math.Max(norm, 1e-12);
    }

    [Fact]
    public void DivergenceOnTwoRanks_StopsThemTogether_WithTheSingleProcessMessageAndExitCode()
    {
        var clock = Stopwatch.StartNew();
        var run = DigitsProgram.Run(_dir, "mlp", "--data", EvenData(), "--world-size", "2", "--lr", "1e30", "--epochs", "2", "--plain");
        Assert.Equal(TrainingHost.Diverged, run.ExitCode);
        Assert.Single(run.Stderr.Split('\n'), l => l.StartsWith("error: the loss became", StringComparison.Ordinal));
        Assert.DoesNotContain("   at ", run.Stderr);
        Assert.True(clock.Elapsed < TimeSpan.FromMinutes(1), $"took {clock.Elapsed}");
    }

    [Fact]
    public void NcclOnTheCpu_IsOneUsageLine_BeforeAnyRankStarts()
    {
        var run = DigitsProgram.Run(_dir, "mlp", "--world-size", "2", "--backend", "nccl", "--epochs", "1", "--plain");
        Assert.Equal(TrainingHost.UsageError, run.ExitCode);
        Assert.Equal("error: --backend nccl reduces CUDA tensors only: add --device cuda, or use --backend mpi (or auto) on the CPU", run.Stderr.Split('\n')[0]);
        Assert.DoesNotContain("rank", run.Stderr);
    }

    [Fact]
    public void AsyncCnn_SyncEveryFour_OnTwoRanks_Reaches96Percent_EndsInSync_AndCountsItsRounds()
    {
        var run = DigitsProgram.Run(_dir, "--world-size", "2", "--mode", "async", "--sync-every", "4", "--epochs", "6", "--no-optimize", "--report", "a.json", "--plain");
        Assert.True(run.ExitCode == 0, run.ToString());
        var report = TrainingReport.Read(Path.Combine(_dir, "a.json"));
        Assert.True(report.TestAccuracy >= 0.96, $"test accuracy {report.TestAccuracy}");
        var d = report.GetSection<Distributed.DistributedReport>("distributed")!;
        Assert.Equal(("async", 4, true, "none"), (d.Mode, d.SyncEvery, d.Overlap, d.OuterOptimizer));
        Assert.True(d.RanksInSync, "every epoch ends with a blocking round, so the ranks end bitwise equal");
        Assert.Equal(report.Steps, d.Steps);
        // Rounds at global steps 0, 4, 8, … (PeriodicModelAverager, no warm-up) plus the blocking one closing each epoch.
        long rounds = (report.Steps + 3) / 4 + report.Epochs;
        Assert.Equal(rounds, d.SyncRounds);
        // Bytes: per round, one float32 copy of the parameters and float buffers and the 24-byte finiteness vote;
        // nothing between rounds (local steps vote at the next round, not every step).
        long perRound = d.BytesCommunicated / rounds;
        Assert.True(d.BytesCommunicated % rounds == 0 && (perRound - 24) % 4 == 0 && (perRound - 24) / 4 >= report.ParamCount,
            $"{d.BytesCommunicated} bytes for {rounds} rounds of {report.ParamCount} parameters");
        Assert.True(d.CommSecondsHidden >= 0);
    }

    [Fact]
    public void AsyncDivergence_StopsBothRanks_WithTheSingleProcessMessage()
    {
        var run = DigitsProgram.Run(_dir, "mlp", "--data", EvenData(), "--world-size", "2", "--mode", "async", "--sync-every", "3", "--lr", "1e30", "--epochs", "2", "--plain");
        Assert.Equal(TrainingHost.Diverged, run.ExitCode);
        Assert.Single(run.Stderr.Split('\n'), l => l.StartsWith("error: the loss became", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("--sync-every 4", "error: --sync-every applies to asynchronous training (local SGD); add --mode async")]
    [InlineData("--outer-optimizer nesterov", "error: --outer-optimizer applies to asynchronous training (local SGD); add --mode async")]
    [InlineData("--mode async --sync-every 0", "error: --sync-every must be at least 1 (local steps between averaging rounds), got 0")]
    public void AsyncSettings_OutOfPlace_AreOneUsageLine(string arguments, string expected)
    {
        var run = DigitsProgram.Run(_dir, new[] { "mlp", "--world-size", "2", "--epochs", "1", "--plain" }.Concat(arguments.Split(' ')).ToArray());
        Assert.Equal(TrainingHost.UsageError, run.ExitCode);
        Assert.Equal(expected, run.Stderr.Split('\n')[0]);
    }

    [Theory]
    [InlineData("gradients")]
    [InlineData("parameters")]
    public async Task ShardedRun_KilledAndRestartedFromItsCheckpoint_EndsWithTheWeightsOfAnUninterruptedDdpRun(string shard)
    {
        // DigitsMlp (Adam) on the full training set for 3 epochs: DDP uninterrupted against ZeRO stage 2 (or 3) with rank 1
        // killed after the first checkpoint and the job restarted from it. Equal weights need the Adam moments each rank
        // wrote into its shard of the sharded checkpoint, read back by their owners, and the reduce-scatter/all-gather
        // steps being DDP's.
        string data = Path.Combine(DigitsProgram.RepoRoot(), "samples", "Digits", "data", "optdigits.tra");
        string[] common = { "mlp", "--data", data, "--test-data", "", "--epochs", "3", "--world-size", "2", "--deterministic", "--threads", "1", "--plain" };
        var ddp = DigitsProgram.Run(_dir, common.Concat(new[] { "--checkpoint-dir", "ddp", "--report", "ddp.json" }).ToArray());
        Assert.True(ddp.ExitCode == 0, ddp.ToString());

        using var job = DigitsProgram.Start(_dir, common.Concat(new[] { "--shard", shard, "--checkpoint-dir", "zero", "--report", "zero.json", "--max-restarts", "1" }).ToArray());
        var stderr = job.StandardError.ReadToEndAsync();
        var stdout = job.StandardOutput.ReadToEndAsync();
        var checkpoint = Path.Combine(_dir, "zero", Checkpoint.FileName);
        var clock = Stopwatch.StartNew();
        while (!File.Exists(checkpoint) && clock.Elapsed < TimeSpan.FromMinutes(3) && !job.HasExited) Thread.Sleep(50);
        Assert.True(File.Exists(checkpoint) && !job.HasExited, "no checkpoint while the job ran: " + (job.HasExited ? await stderr : ""));
        Process.GetProcessById(RankProcess(job.Id, 1)).Kill(); // SIGKILL
        bool ended = job.WaitForExit(TimeSpan.FromMinutes(4));
        if (!ended) job.Kill(entireProcessTree: true);
        string errors = await stderr, output = await stdout;
        Assert.True(ended && job.ExitCode == 0, $"exit {(ended ? job.ExitCode : -1)}\n{errors}\n{output}");
        Assert.Contains("Resuming DigitsMlp from", output);

        Assert.Equal("none", TrainingReport.Read(Path.Combine(_dir, "ddp.json")).GetSection<Distributed.DistributedReport>("distributed")!.Shard);
        var zero = TrainingReport.Read(Path.Combine(_dir, "zero.json"));
        var section = zero.GetSection<Distributed.DistributedReport>("distributed")!;
        Assert.Equal(shard, section.Shard);
        Assert.True(section.RanksInSync);
        Assert.Equal(1, zero.Restarts);
        var a = Weights(Path.Combine(_dir, "ddp", Checkpoint.FileName));
        var b = Weights(checkpoint);
        foreach (var (name, expected) in a)
        {
            double relative = RelativeDifference(expected, b[name]);
            Assert.True(relative <= 1e-6, $"{name}: relative difference {relative:E2}");
        }
    }

    [Fact]
    public async Task ShardedCheckpoint_ConsolidatesAndResumesAtWorldSizeOne_AndExportReadsItDirectly()
    {
        // A ZeRO stage-2 run of DigitsMlp at 2 ranks, ended (the whole job killed) once its first sharded checkpoint is
        // written; 4 epochs declared, so the checkpoint is one the run had not finished with.
        string data = Path.Combine(DigitsProgram.RepoRoot(), "samples", "Digits", "data", "optdigits.tra");
        string[] common = { "mlp", "--data", data, "--test-data", "", "--epochs", "4", "--batch-size", "32", "--deterministic", "--threads", "1", "--plain" };
        using (var job = DigitsProgram.Start(_dir, common.Concat(new[] { "--world-size", "2", "--shard", "gradients", "--checkpoint-dir", "zero" }).ToArray()))
        {
            var stderr = job.StandardError.ReadToEndAsync();
            var index = Path.Combine(_dir, "zero", Checkpoint.FileName);
            var clock = Stopwatch.StartNew();
            while (!File.Exists(index) && clock.Elapsed < TimeSpan.FromMinutes(3) && !job.HasExited) Thread.Sleep(20);
            Assert.True(File.Exists(index), "no checkpoint while the job ran: " + (job.HasExited ? await stderr : ""));
            if (!job.HasExited) job.Kill(entireProcessTree: true);
            job.WaitForExit();
        }
        string sharded = Path.Combine(_dir, "zero", Checkpoint.FileName);
        Assert.True(ShardedCheckpoint.IsSharded(sharded));
        var info = ShardedCheckpoint.Info(sharded);
        Assert.Equal(2, info.WorldSize);
        Assert.Equal("gradients", info.Shard);
        Assert.Equal(2, info.Shards.Count);
        Assert.All(info.Shards, f => Assert.True(File.Exists(f), $"{f} is named by the index but missing"));
        Assert.InRange(info.Epoch, 1, 3);
        var stored = Weights(sharded); // the sharded checkpoint read directly (every shard's parameters)

        // At another world size the sharded checkpoint is refused with the way out: consolidate.
        var refused = DigitsProgram.Run(_dir, common.Concat(new[] { "--checkpoint-dir", "zero", "--resume" }).ToArray());
        Assert.Equal(TrainingHost.UsageError, refused.ExitCode);
        Assert.Contains("'WorldSize' is 2 in the checkpoint but 1 in this run", refused.Stderr);
        Assert.Contains("run `consolidate --checkpoint zero/checkpoint.ckpt --output FILE --world-size 1`", refused.Stderr);

        // consolidate: one whole checkpoint with the same weights, for world size 1.
        var consolidate = DigitsProgram.Run(_dir, "mlp", "consolidate", "--checkpoint", "zero/checkpoint.ckpt", "--output", "one/checkpoint.ckpt", "--world-size", "1");
        Assert.True(consolidate.ExitCode == 0, consolidate.ToString());
        Assert.Contains($"consolidated DigitsMlp from zero/checkpoint.ckpt (2 shards, shard level gradients, epoch {info.Epoch}", consolidate.Stdout);
        string whole = Path.Combine(_dir, "one", Checkpoint.FileName);
        Assert.False(ShardedCheckpoint.IsSharded(whole));
        var consolidated = Weights(whole);
        foreach (var (name, expected) in stored) Assert.Equal(expected, consolidated[name]);

        // It resumes at world size 1 (the global batch is now 32) and trains the remaining epochs.
        var resumed = DigitsProgram.Run(_dir, common.Concat(new[] { "--checkpoint-dir", "one", "--resume", "--report", "one.json" }).ToArray());
        Assert.True(resumed.ExitCode == 0, resumed.ToString());
        Assert.Contains($"Resuming DigitsMlp from one/checkpoint.ckpt after epoch {info.Epoch}.", resumed.Stdout);
        var report = TrainingReport.Read(Path.Combine(_dir, "one.json"));
        Assert.Equal(1, report.WorldSize);
        Assert.Equal(4, report.History.Count);
        Assert.Equal(4, Checkpoint.ReadState(whole).Epoch);
        Assert.True(report.History[^1].TrainLoss < report.History[info.Epoch - 1].TrainLoss, "training went on from the consolidated state");

        // export reads the sharded checkpoint directly.
        var export = DigitsProgram.Run(_dir, "mlp", "export", "--model", "zero/checkpoint.ckpt", "--output", "zero.safetensors");
        Assert.True(export.ExitCode == 0, export.ToString());
        using (var model = Digits.DigitsMlp.Load(Path.Combine(_dir, "zero.safetensors")))
            foreach (var (name, parameter) in model.named_parameters())
                Assert.Equal(stored[name], parameter.data<float>().ToArray());

        // A damaged shard, then a missing one: one line naming the file, exit code 2, for consolidate and export alike.
        var bytes = File.ReadAllBytes(info.Shards[1]);
        bytes[bytes.Length / 2] ^= 0x01;
        File.WriteAllBytes(info.Shards[1], bytes);
        foreach (var command in new[] { new[] { "mlp", "consolidate", "--checkpoint", "zero/checkpoint.ckpt", "--output", "x.ckpt" }, new[] { "mlp", "export", "--model", "zero/checkpoint.ckpt", "--output", "x.pt" } })
        {
            var bad = DigitsProgram.Run(_dir, command);
            Assert.Equal(TrainingHost.UsageError, bad.ExitCode);
            Assert.Equal($"error: Checkpoint shard {info.Shards[1]} (rank 1 of 2, named by zero/checkpoint.ckpt) is corrupt (checksum mismatch; the file was truncated or altered)",
                bad.Stderr.Trim());
        }
        File.Delete(info.Shards[0]);
        var missing = DigitsProgram.Run(_dir, "mlp", "consolidate", "--checkpoint", "zero/checkpoint.ckpt", "--output", "x.ckpt");
        Assert.Equal(TrainingHost.UsageError, missing.ExitCode);
        Assert.Equal($"error: Checkpoint shard {info.Shards[0]} (rank 0 of 2, named by zero/checkpoint.ckpt) is missing: the checkpoint is incomplete", missing.Stderr.Trim());
        Assert.False(File.Exists(Path.Combine(_dir, "x.ckpt")));
    }

    [Theory]
    [InlineData("--mode async --shard gradients", "error: --shard gradients applies to synchronous training (one model stepped together); add --mode sync")]
    [InlineData("--shard all", "error: Argument 'all' not recognized. Must be one of:")]
    public void ShardSettings_OutOfPlace_AreOneUsageLine(string arguments, string expected)
    {
        var run = DigitsProgram.Run(_dir, new[] { "mlp", "--world-size", "2", "--epochs", "1", "--plain" }.Concat(arguments.Split(' ')).ToArray());
        Assert.Equal(TrainingHost.UsageError, run.ExitCode);
        Assert.StartsWith(expected, run.Stderr.Split('\n')[0], StringComparison.Ordinal);
    }

    [Fact]
    public void Ranks_EndBitwiseInSync_AndTheReportSaysSo()
    {
        var run = DigitsProgram.Run(_dir, "mlp", "--data", EvenData(), "--epochs", "1", "--world-size", "2", "--report", "r.json", "--plain");
        Assert.True(run.ExitCode == 0, run.ToString());
        var report = TrainingReport.Read(Path.Combine(_dir, "r.json"));
        var distributed = report.GetSection<Distributed.DistributedReport>("distributed")!;
        Assert.True(distributed.RanksInSync);
        Assert.Equal("mpi", distributed.Backend);
        Assert.InRange(distributed.CommFraction, 0.0, 1.0);
    }

    [Fact]
    public async Task KilledRank_EndsTheJobWithinTenSeconds_NamingIt_AndTheCheckpointResumes()
    {
        // The full training set for 40 epochs: the job is still running when rank 1 is killed after the first epoch.
        string[] plan = { "mlp", "--world-size", "2", "--threads", "1", "--plain", "--checkpoint-dir", "ckpt" };
        using var job = DigitsProgram.Start(_dir, plan);
        var stderr = job.StandardError.ReadToEndAsync();
        var stdout = job.StandardOutput.ReadToEndAsync();
        var checkpoint = Path.Combine(_dir, "ckpt", Checkpoint.FileName);
        var deadline = Stopwatch.StartNew();
        while (!File.Exists(checkpoint) && deadline.Elapsed < TimeSpan.FromMinutes(3) && !job.HasExited) Thread.Sleep(50);
        Assert.True(File.Exists(checkpoint) && !job.HasExited, "no checkpoint while the job ran: " + (job.HasExited ? await stderr : ""));

        int rank1 = RankProcess(job.Id, 1);
        var clock = Stopwatch.StartNew();
        Process.GetProcessById(rank1).Kill();
        bool ended = job.WaitForExit(TimeSpan.FromSeconds(10));
        if (!ended) job.Kill(entireProcessTree: true);
        Assert.True(ended, $"the job still ran {clock.Elapsed.TotalSeconds:0.0} s after rank 1 was killed");
        Assert.NotEqual(0, job.ExitCode);
        string errors = await stderr;
        Assert.Contains("rank 1", errors);
        Assert.DoesNotContain("   at ", errors);

        // The last checkpoint written before the failure is intact and resumes.
        var resumed = DigitsProgram.Run(_dir, plan.Append("--resume").ToArray());
        Assert.True(resumed.ExitCode == 0, resumed.ToString() + await stdout);
        Assert.Contains("Resuming", resumed.Stdout);
    }

    [Fact]
    public async Task KilledRank_WithMaxRestarts_RestartsFromTheLastCheckpoint_AndEndsWithTheWeightsOfAnUninterruptedRun()
    {
        // The full training set (about 2 s an epoch on two ranks) for 5 epochs: rank 1 is killed after the first.
        string data = Path.Combine(DigitsProgram.RepoRoot(), "samples", "Digits", "data", "optdigits.tra");
        string[] common = { "mlp", "--data", data, "--test-data", "", "--epochs", "5", "--world-size", "2", "--deterministic", "--threads", "1", "--plain" };
        var uninterrupted = DigitsProgram.Run(_dir, common.Concat(new[] { "--checkpoint-dir", "one", "--report", "one.json" }).ToArray());
        Assert.True(uninterrupted.ExitCode == 0, uninterrupted.ToString());

        using var job = DigitsProgram.Start(_dir, common.Concat(new[] { "--checkpoint-dir", "two", "--report", "two.json", "--max-restarts", "1" }).ToArray());
        var stderr = job.StandardError.ReadToEndAsync();
        var stdout = job.StandardOutput.ReadToEndAsync();
        var checkpoint = Path.Combine(_dir, "two", Checkpoint.FileName);
        var clock = Stopwatch.StartNew();
        while (!File.Exists(checkpoint) && clock.Elapsed < TimeSpan.FromMinutes(3) && !job.HasExited) Thread.Sleep(50);
        Assert.True(File.Exists(checkpoint) && !job.HasExited, "no checkpoint while the job ran: " + (job.HasExited ? await stderr : ""));
        Process.GetProcessById(RankProcess(job.Id, 1)).Kill(); // SIGKILL

        // The job restarts itself and finishes; a hang fails the test instead of the run.
        bool ended = job.WaitForExit(TimeSpan.FromMinutes(4));
        if (!ended) job.Kill(entireProcessTree: true);
        string errors = await stderr, output = await stdout;
        Assert.True(ended, "the restarted job did not end: " + errors);
        Assert.True(job.ExitCode == 0, $"exit {job.ExitCode}\n{errors}\n{output}");
        var lines = errors.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Single(lines, l => l.StartsWith("restart 1 of 1: rank 1 ", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.Contains("errno", StringComparison.Ordinal) || l.Contains("   at ", StringComparison.Ordinal));
        Assert.Contains("Resuming DigitsMlp from", output);

        var one = TrainingReport.Read(Path.Combine(_dir, "one.json"));
        var two = TrainingReport.Read(Path.Combine(_dir, "two.json"));
        Assert.Equal(0, one.Restarts);
        Assert.Equal(1, two.Restarts);
        Assert.Equal(one.Steps, two.Steps);
        Assert.Equal(5, two.History.Count);
        // Sync DDP, deterministic, resumed with the optimiser and RNG state of the checkpoint: bit for bit.
        var a = Weights(Path.Combine(_dir, "one", Checkpoint.FileName));
        var b = Weights(checkpoint);
        foreach (var (name, expected) in a)
            Assert.True(expected.AsSpan().SequenceEqual(b[name]), $"{name} differs from the uninterrupted run");
    }

    [Fact]
    public void MaxRestarts_OnOneProcess_OrNegative_IsOneUsageLine()
    {
        var single = DigitsProgram.Run(_dir, "mlp", "--epochs", "1", "--max-restarts", "2", "--plain");
        Assert.Equal(TrainingHost.UsageError, single.ExitCode);
        Assert.StartsWith("error: --max-restarts restarts the ranks the trainer starts under mpirun: add --world-size 2 or more", single.Stderr);
        var negative = DigitsProgram.Run(_dir, "mlp", "--epochs", "1", "--world-size", "2", "--max-restarts", "-1", "--plain");
        Assert.Equal(TrainingHost.UsageError, negative.ExitCode);
        Assert.StartsWith("error: --max-restarts must be 0 or more, got -1", negative.Stderr);
    }

    /// <summary>The pid of the rank <paramref name="rank"/> among the descendants of <paramref name="root"/> (by its Open MPI environment).</summary>
    private static int RankProcess(int root, int rank)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(30))
        {
            foreach (var dir in Directory.GetDirectories("/proc"))
            {
                if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
                try
                {
                    var environ = File.ReadAllText(Path.Combine(dir, "environ")).Split('\0');
                    if (environ.Contains($"OMPI_COMM_WORLD_RANK={rank}") && IsDescendant(pid, root)) return pid;
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            }
            Thread.Sleep(100);
        }
        throw new InvalidOperationException($"rank {rank} of job {root} not found");
    }

    private static bool IsDescendant(int pid, int root)
    {
        for (int p = pid, hops = 0; p > 1 && hops < 10; hops++)
        {
            if (p == root) return true;
            var stat = File.ReadAllText($"/proc/{p}/stat");
            p = int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1]);
        }
        return false;
    }

    private static Dictionary<string, float[]> Weights(string path) => DigitsProgram.Weights<Digits.DigitsMlp>(path);

    private static Dictionary<string, float[]> Weights<TModel>(string path) where TModel : nn.Module, new() => DigitsProgram.Weights<TModel>(path);
}
