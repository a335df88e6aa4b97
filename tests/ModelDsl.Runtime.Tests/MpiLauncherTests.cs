using System.Collections;
using System.Collections.Generic;
using System.IO;
using ModelDsl.Runtime.Distributed;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// Launching and failing: the relaunch under mpirun (arguments, missing mpirun), mpirun's failure reports condensed
/// to one line (recorded Open MPI 4.1.4 output), and real jobs whose last rank throws, exits non-zero or is killed
/// with SIGKILL while the other waits in a collective: each must end within 10 s with one line naming the rank.
/// </summary>
public sealed class MpiLauncherTests
{
    private static readonly TimeSpan FailureBound = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan JobTimeout = TimeSpan.FromSeconds(60);

    // ---------------------------------------------------------------- relaunch

    [Fact]
    public void MpirunArguments_RunTheProgramOnNRanks_WithItsArgumentsAndTheHostfile()
    {
        var args = MpiLauncher.MpirunArguments(new[] { "--world-size", "2", "--epochs", "3" }, 2,
            new MpiLaunchOptions { Hostfile = "hosts.txt", Cores = 2, Command = new[] { "/opt/app/Digits" } });
        Assert.Equal(new[] { "-np", "2", "--oversubscribe", "--bind-to", "none", "--mca", "mpi_yield_when_idle", "1", "--hostfile", "hosts.txt", "/opt/app/Digits", "--world-size", "2", "--epochs", "3" }, args);

        // The caller's own binding and idle policy replace the defaults.
        var bound = MpiLauncher.MpirunArguments(Array.Empty<string>(), 4, new MpiLaunchOptions
        {
            Command = new[] { "dotnet", "x.dll" },
            MpirunArguments = new[] { "--bind-to", "core", "--mca", "mpi_yield_when_idle", "0" },
        });
        Assert.Equal(new[] { "-np", "4", "--oversubscribe", "--bind-to", "core", "--mca", "mpi_yield_when_idle", "0", "dotnet", "x.dll" }, bound);
        Assert.Throws<ArgumentOutOfRangeException>(() => MpiLauncher.MpirunArguments(Array.Empty<string>(), 0));
    }

    [Theory]
    [InlineData(2, 2, "--use-hwthread-cpus --map-by slot:PE=1")] // each rank on its own CPU
    [InlineData(2, 16, "--use-hwthread-cpus --map-by slot:PE=8")] // each rank on its share, its libtorch pool's size
    [InlineData(3, 16, "--use-hwthread-cpus --map-by slot:PE=5")]
    [InlineData(3, 2, "--bind-to none")] // oversubscribed: the kernel spreads them
    public void MpirunArguments_OnOneMachine_BindEachRankToItsShareOfTheCpus_UnlessOversubscribed(int ranks, int cores, string expected)
    {
        var args = MpiLauncher.MpirunArguments(Array.Empty<string>(), ranks, new MpiLaunchOptions { Command = new[] { "p" }, Cores = cores });
        Assert.Equal(("-np " + ranks + " --oversubscribe " + expected + " --mca mpi_yield_when_idle 1 p").Split(' '), args);
    }

    [Fact]
    public void RankThreads_AreTheBoundRanksCpus_OrItsShareOfTheMachines()
    {
        // Bound by mpirun: ProcessorCount already is this rank's share.
        Assert.Equal(8, TrainingHostThreads(2, 8, new Hashtable { ["OMPI_MCA_orte_bound_at_launch"] = "1", ["OMPI_COMM_WORLD_LOCAL_SIZE"] = "2" }));
        // Unbound: the machine's CPUs over the ranks on it (the world size when the launcher does not say).
        Assert.Equal(4, TrainingHostThreads(2, 16, new Hashtable { ["OMPI_MCA_hwloc_base_binding_policy"] = "none", ["OMPI_COMM_WORLD_LOCAL_SIZE"] = "4" }));
        Assert.Equal(8, TrainingHostThreads(2, 16, new Hashtable()));
        Assert.Equal(1, TrainingHostThreads(4, 2, new Hashtable()));
    }

    /// <summary>The CPUs of a Linux CPU list such as <c>0-3,8</c>.</summary>
    private static HashSet<int> CpuList(string list) => list.Split(',', StringSplitOptions.RemoveEmptyEntries)
        .SelectMany(part => part.Split('-') is [var from, var to] ? Enumerable.Range(int.Parse(from), int.Parse(to) - int.Parse(from) + 1) : new[] { int.Parse(part) })
        .ToHashSet();

    private static int TrainingHostThreads(int worldSize, int cpus, Hashtable environment) =>
        ModelDsl.Runtime.Training.TrainingHost.RankThreads(worldSize, cpus, environment);

    [Fact]
    public void SelfCommand_StartsThisProcessAgain()
    {
        var command = MpiLauncher.SelfCommand();
        Assert.Equal(Environment.ProcessPath, command[0]);
        if (Path.GetFileNameWithoutExtension(command[0]) == "dotnet")
            Assert.EndsWith(".dll", command[1], StringComparison.Ordinal);
    }

    [Fact]
    public void ShouldRelaunch_OnlyForSeveralRanksOutsideALauncher()
    {
        Assert.False(MpiLauncher.ShouldRelaunch(1));
        Assert.True(MpiLauncher.ShouldRelaunch(2));
    }

    [Fact]
    public void MissingMpirun_PrintsOneLineWithTheInstallCommand_AndReturns2()
    {
        var error = new StringWriter();
        int code = MpiLauncher.Relaunch(new[] { "--world-size", "2" }, 2,
            new MpiLaunchOptions { Mpirun = "modeldsl-no-such-mpirun", Command = new[] { "true" }, Error = error });
        Assert.Equal(2, code);
        Assert.Equal("error: mpirun was not found; install Open MPI: apt-get install openmpi-bin" + Environment.NewLine, error.ToString());
    }

    [Fact]
    public void Relaunch_RunsTheRanks_AndReturnsTheirExitCode()
    {
        var job = MpiJob.Launch(2, "info", JobTimeout);
        Assert.True(job.ExitCode == 0, job.Output);
        Assert.Contains("rank 0 of 2 backend mpi", job.Stdout, StringComparison.Ordinal);
        Assert.Contains("rank 1 of 2 backend mpi", job.Stdout, StringComparison.Ordinal);
        // Each rank bound to its own half of the CPUs this test process may use (all of them, unbound, on one CPU).
        string cpus = File.ReadLines("/proc/self/status").First(l => l.StartsWith("Cpus_allowed_list:", StringComparison.Ordinal)).Split(':')[1].Trim();
        var ranks = Enumerable.Range(0, 2)
            .Select(r => CpuList(System.Text.RegularExpressions.Regex.Match(job.Stdout, $"rank {r} of 2 backend mpi cpus (\\S+)").Groups[1].Value))
            .ToArray();
        if (Environment.ProcessorCount < 2)
        {
            Assert.All(ranks, r => Assert.Equal(CpuList(cpus), r));
        }
        else
        {
            Assert.All(ranks, r => Assert.Equal(Environment.ProcessorCount / 2, r.Count));
            Assert.Empty(ranks[0].Intersect(ranks[1]));
            Assert.Subset(CpuList(cpus), ranks[0].Union(ranks[1]).ToHashSet());
        }
        Assert.Equal("", job.Stderr.Trim());
        // Output redirected: the ranks were told there is no terminal, so no control codes reach the pipe.
        Assert.DoesNotContain('\u001b', job.Stdout);
    }

    // ---------------------------------------------------------------- failure, never a hang

    [Fact]
    public void RankThatThrows_EndsTheJobWithin10s_WithOneLineNamingTheRankAndTheCause()
    {
        var job = MpiJob.Launch(2, "throw", JobTimeout);
        Assert.False(job.TimedOut, job.Output);
        Assert.True(job.Elapsed < FailureBound, job.Output);
        Assert.NotEqual(0, job.ExitCode);
        Assert.Equal(new[] { "error: rank 1 of 2: InvalidOperationException: deliberate failure on rank 1" }, job.ErrorLines);
    }

    [Fact]
    public void RankThatThrowsUnderRunRank_NamesTheInnermostCauseToo()
    {
        var job = MpiJob.Launch(2, "throw-guarded", JobTimeout);
        Assert.True(job.Elapsed < FailureBound, job.Output);
        Assert.NotEqual(0, job.ExitCode);
        Assert.Equal(new[] { "error: rank 1 of 2: InvalidOperationException: deliberate failure on rank 1 (caused by TimeoutException: the inner cause)" },
            job.ErrorLines);
    }

    [Fact]
    public void RankThatReturnsNonZero_EndsTheJobWithItsExitCode()
    {
        var job = MpiJob.Launch(2, "exit-code", JobTimeout);
        Assert.True(job.Elapsed < FailureBound, job.Output);
        Assert.Equal(3, job.ExitCode);
        Assert.Equal(new[] { "error: rank 1 of 2: exited with code 3" }, job.ErrorLines);
    }

    [Fact]
    public void RankWhoseMainReturnsNonZero_AbortsAtProcessExit_InsteadOfFinalizingIntoAHang()
    {
        // Without RunRank: the runtime's process-exit handler sees the exit code and aborts the job (finalizing
        // and exiting non-zero would leave the other rank waiting in its collective, and mpirun with it).
        var job = MpiJob.Launch(2, "exit-code-unguarded", JobTimeout);
        Assert.False(job.TimedOut, job.Output);
        Assert.True(job.Elapsed < FailureBound, job.Output);
        Assert.Equal(3, job.ExitCode);
        Assert.Equal(new[] { "error: rank 1 of 2: exited with code 3" }, job.ErrorLines);
    }

    [Fact]
    public void RankKilledWithSigkill_EndsTheJobWithin10s_WithOneLineNamingTheRank()
    {
        var job = MpiJob.Launch(2, "kill", JobTimeout);
        Assert.False(job.TimedOut, job.Output);
        Assert.True(job.Elapsed < FailureBound, job.Output);
        Assert.NotEqual(0, job.ExitCode);
        var line = Assert.Single(job.ErrorLines);
        Assert.Matches(@"^error: rank 1 \(.*\) was killed by signal 9 \(Killed\); the job was stopped\.$", line);
    }

    // ---------------------------------------------------------------- restarts (--max-restarts)

    [Fact]
    public void KilledRank_WithARestartLeft_RestartsEveryRank_AndTheJobSucceeds()
    {
        var job = MpiJob.LaunchWithRestarts(2, 2, "kill-first-attempt", 2 * JobTimeout);
        Assert.False(job.TimedOut, job.Output);
        Assert.True(job.ExitCode == 0, job.Output);
        // The failure, condensed as ever, then one line for the restart; the second attempt's ranks know the count.
        Assert.Equal(2, job.ErrorLines.Length);
        Assert.Matches(@"^error: rank 1 \(.*\) was killed by signal 9 \(Killed\); the job was stopped\.$", job.ErrorLines[0]);
        Assert.Matches(@"^restart 1 of 2: rank 1 \(.*\) was killed by signal 9 \(Killed\); starting all 2 ranks again from the last checkpoint$", job.ErrorLines[1]);
        Assert.Contains("rank 0 of 2: restart count 1", job.Stdout);
        Assert.Contains("rank 1 of 2: restart count 1", job.Stdout);
    }

    [Fact]
    public void RanksThatFailEveryTime_AreRestartedMaxRestartsTimes_ThenTheJobFails()
    {
        var job = MpiJob.LaunchWithRestarts(2, 1, "kill", 2 * JobTimeout);
        Assert.False(job.TimedOut, job.Output);
        Assert.NotEqual(0, job.ExitCode);
        Assert.Single(job.ErrorLines, l => l.StartsWith("restart ", StringComparison.Ordinal));
        Assert.Equal(2, job.ErrorLines.Count(l => l.Contains("was killed by signal 9", StringComparison.Ordinal) && l.StartsWith("error: ", StringComparison.Ordinal)));
    }

    [Fact]
    public void FinalExitCodes_AreNotRestarted()
    {
        // Exit code 3 is the trainer's divergence: a restart would diverge again.
        var job = MpiJob.LaunchWithRestarts(2, 2, "exit-code", JobTimeout);
        Assert.False(job.TimedOut, job.Output);
        Assert.Equal(3, job.ExitCode);
        Assert.Equal(new[] { "error: rank 1 of 2: exited with code 3" }, job.ErrorLines);
    }

    [Fact]
    public void MpirunArguments_PassTheRestartCount_OnlyWhenRestartsAreAllowed()
    {
        var args = MpiLauncher.MpirunArguments(new[] { "--epochs", "3" }, 2, new MpiLaunchOptions { Command = new[] { "prog" }, MaxRestarts = 1 });
        int x = args.ToList().IndexOf("-x");
        Assert.True(x >= 0 && args[x + 1] == MpiLauncher.RestartCountVariable && x < args.ToList().IndexOf("prog"), string.Join(" ", args));
        Assert.DoesNotContain("-x", MpiLauncher.MpirunArguments(new[] { "--epochs", "3" }, 2, new MpiLaunchOptions { Command = new[] { "prog" } }));
    }

    // ---------------------------------------------------------------- mpirun's reports, condensed

    [Fact]
    public void Filter_DropsOpenMpisReadErrorOfADeadPeer_BeforeTheCleanLine()
    {
        // What a surviving rank's shared-memory transport prints when its peer was killed (issue 19, item 6).
        var lines = Filter(
            "[vm:31337] Read -1, expected 65536, errno = 3",
            "Read -1, expected 4096, errno = 3",
            Rule, "mpirun noticed that process rank 1 with PID 0 on node vm exited on signal 9 (Killed).", Rule);
        Assert.Equal(new[] { "error: rank 1 (on vm) was killed by signal 9 (Killed); the job was stopped." }, lines);
        // A rank's own line that merely looks similar passes.
        Assert.Equal(new[] { "Read 3 files, expected 4" }, Filter("Read 3 files, expected 4"));
    }

    private const string Rule = "--------------------------------------------------------------------------";

    [Fact]
    public void Filter_AbortBanner_GivesWayToTheRanksOwnLine_EvenWhenTheLineComesLater()
    {
        var lines = Filter(
            Rule,
            "MPI_ABORT was invoked on rank 1 in communicator MPI_COMM_WORLD",
            "with errorcode 1.",
            "",
            "NOTE: invoking MPI_ABORT causes Open MPI to kill all MPI processes.",
            "You may or may not see output from other processes, depending on",
            "exactly when Open MPI kills them.",
            Rule,
            "error: rank 1 of 2: InvalidOperationException: boom",
            "[vm:26756] 1 more process has sent help message help-mpi-api.txt / mpi-abort",
            "[vm:26756] Set MCA parameter \"orte_base_help_aggregate\" to 0 to see all help / error messages");
        Assert.Equal(new[] { "error: rank 1 of 2: InvalidOperationException: boom" }, lines);
    }

    [Fact]
    public void Filter_AbortBanner_WithoutTheRanksLine_BecomesOneLine()
    {
        var lines = Filter(Rule, "MPI_ABORT was invoked on rank 3 in communicator MPI_COMM_WORLD", "with errorcode 7.", "", "NOTE: invoking MPI_ABORT causes Open MPI to kill all MPI processes.", Rule);
        Assert.Equal(new[] { "error: rank 3 called MPI_Abort (error code 7); the job was stopped." }, lines);
    }

    [Fact]
    public void Filter_KilledRank_BecomesOneLine()
    {
        var lines = Filter(
            Rule, "Primary job  terminated normally, but 1 process returned", "a non-zero exit code. Per user-direction, the job has been aborted.", Rule,
            Rule, "mpirun noticed that process rank 1 with PID 4242 on node vm exited on signal 9 (Killed).", Rule);
        Assert.Equal(new[] { "error: rank 1 (pid 4242 on vm) was killed by signal 9 (Killed); the job was stopped." }, lines);
    }

    [Fact]
    public void Filter_RankExitingWithoutFinalize_AndNonZeroExit_BecomeOneLineEach()
    {
        Assert.Equal(new[] { "error: rank 1 exited without finalizing MPI (it crashed or exited early); the job was stopped." },
            Filter(Rule, "mpirun has exited due to process rank 1 with PID 0 on", "node vm exiting improperly. There are three reasons this could occur:", "", "1. this process did not call \"init\" before exiting, but others in", Rule));
        Assert.Equal(new[] { "error: rank 0 exited with code 5; the job was stopped." },
            Filter(Rule, "mpirun detected that one or more processes exited with non-zero status, thus causing", "the job to be terminated. The first process to do so was:", "", "  Process name: [[49655,1],0]", "  Exit code:    5", Rule));
    }

    [Fact]
    public void Filter_PassesRankOutputAndUnknownMessagesThroughWhole()
    {
        var lines = Filter("epoch 1 loss 0.5", Rule, "Some other Open MPI warning", "on two lines", Rule, "warning: from a rank");
        Assert.Equal(new[] { "epoch 1 loss 0.5", Rule, "Some other Open MPI warning", "on two lines", Rule, "warning: from a rank" }, lines);
        // A block cut off by the end of the stream is not lost either.
        Assert.Equal(new[] { Rule, "half a message" }, Filter(Rule, "half a message"));
    }

    private static List<string> Filter(params string[] input)
    {
        var output = new List<string>();
        var filter = new MpirunOutputFilter(output.Add);
        foreach (string line in input)
            filter.WriteLine(line);
        filter.Complete();
        return output;
    }
}
