using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Text;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// Runs tests/ModelDsl.Distributed.TestHost as a real multi-rank job: under <c>mpirun</c> directly, or through the
/// host's own <c>launch</c> mode (MpiLauncher.Relaunch, as a trainer does). Collects stdout, stderr, the exit code
/// and the wall time; kills the whole process tree at the timeout so a hang is a failed test, not a stuck run.
/// </summary>
internal static class MpiJob
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed, bool TimedOut)
    {
        /// <summary>Both streams, for assertion messages.</summary>
        public string Output => $"exit {ExitCode} after {Elapsed.TotalSeconds:F1} s{(TimedOut ? " (timed out)" : "")}\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";

        /// <summary>Non-empty stderr lines.</summary>
        public string[] ErrorLines => Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }

    /// <summary><c>mpirun -np N --oversubscribe dotnet TestHost.dll scenario args…</c>.</summary>
    public static Result Mpirun(int ranks, string scenario, TimeSpan timeout, params string[] args)
    {
        string mpirun = MpiLauncherPath();
        var all = new List<string> { "-np", ranks.ToString(System.Globalization.CultureInfo.InvariantCulture), "--oversubscribe", "dotnet", TestHostDll(), scenario };
        all.AddRange(args);
        return Run(mpirun, all, timeout, rootVariables: true, clean: true);
    }

    /// <summary><c>dotnet TestHost.dll launch N scenario</c>: the host relaunches itself under mpirun through MpiLauncher.</summary>
    public static Result Launch(int ranks, string scenario, TimeSpan timeout) =>
        Run("dotnet", new[] { TestHostDll(), "launch", ranks.ToString(System.Globalization.CultureInfo.InvariantCulture), scenario }, timeout, rootVariables: false, clean: false);

    /// <summary><c>dotnet TestHost.dll launch-restarts N R scenario</c>: as <see cref="Launch"/>, restarting a failed job up to R times.</summary>
    public static Result LaunchWithRestarts(int ranks, int maxRestarts, string scenario, TimeSpan timeout) =>
        Run("dotnet", new[] { TestHostDll(), "launch-restarts", ranks.ToString(System.Globalization.CultureInfo.InvariantCulture),
            maxRestarts.ToString(System.Globalization.CultureInfo.InvariantCulture), scenario }, timeout, rootVariables: false, clean: false);

    /// <summary><c>dotnet TestHost.dll scenario</c> alone (world size 1, no MPI).</summary>
    public static Result Alone(string scenario, TimeSpan timeout) =>
        Run("dotnet", new[] { TestHostDll(), scenario }, timeout, rootVariables: false, clean: false);

    private static Result Run(string file, IEnumerable<string> args, TimeSpan timeout, bool rootVariables, bool clean)
    {
        var info = new ProcessStartInfo(file)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string a in args)
            info.ArgumentList.Add(a);
        // A test runner started under mpirun would make the host think it is already a rank.
        foreach (string v in new[] { "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE", "SLURM_PROCID", "SLURM_STEP_ID" })
            info.Environment.Remove(v);
        if (rootVariables)
        {
            // What MpiLauncher sets as root; harmless otherwise.
            info.Environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
            info.Environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        }
        else
        {
            // Through the launcher, it is MpiLauncher's job to set them.
            info.Environment.Remove("OMPI_ALLOW_RUN_AS_ROOT");
            info.Environment.Remove("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM");
        }
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        using var process = new Process { StartInfo = info };
        // Run directly under mpirun (not through MpiLauncher, which sets TERM=dumb), ranks write terminal codes.
        Func<string, string> filter = clean ? Clean : s => s;
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (stdout) stdout.AppendLine(filter(e.Data)); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(filter(e.Data)); };
        var clock = Stopwatch.StartNew();
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        bool exited = process.WaitForExit(timeout);
        if (!exited)
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
        }
        process.WaitForExit();
        clock.Stop();
        lock (stdout)
        lock (stderr)
            return new Result(exited ? process.ExitCode : -1, stdout.ToString(), stderr.ToString(), clock.Elapsed, !exited);
    }

    /// <summary>
    /// Removes the terminal-mode escape (ESC [?1h ESC =) .NET writes when a rank's stdout is the pseudo-terminal
    /// Open MPI gives it.
    /// </summary>
    private static string Clean(string line) => line.Replace("\u001b[?1h\u001b=", "", StringComparison.Ordinal);

    private static string MpiLauncherPath() =>
        ModelDsl.Runtime.Distributed.MpiLauncher.FindExecutable("mpirun")
        ?? throw new InvalidOperationException("mpirun is not installed; the multi-rank tests need Open MPI: apt-get install openmpi-bin");

    /// <summary>The test host built in the same configuration as these tests (the test project builds it).</summary>
    public static string TestHostDll()
    {
        var testBin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string configuration = testBin.Parent!.Name;
        string dll = Path.Combine(RepoRoot(), "tests", "ModelDsl.Distributed.TestHost", "bin", configuration, testBin.Name, "ModelDsl.Distributed.TestHost.dll");
        Assert.True(File.Exists(dll), "the distributed test host is not built at " + dll);
        return dll;
    }

    public static string RepoRoot() => DigitsProgram.RepoRoot();
}
