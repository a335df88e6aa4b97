using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Threading;

namespace ModelDsl.Runtime.Distributed;

/// <summary>How <see cref="MpiLauncher.Relaunch"/> starts <c>mpirun</c>.</summary>
public sealed class MpiLaunchOptions
{
    /// <summary>The <c>mpirun</c> to start: a name looked up on <c>PATH</c>, or a path. Default <c>mpirun</c>.</summary>
    public string Mpirun { get; init; } = "mpirun";

    /// <summary>An Open MPI hostfile for a job across machines (<c>--hostfile</c>); <see langword="null"/> runs every rank here.</summary>
    public string? Hostfile { get; init; }

    /// <summary>More arguments for <c>mpirun</c>, placed before the program (e.g. <c>--bind-to none</c>).</summary>
    public IReadOnlyList<string> MpirunArguments { get; init; } = Array.Empty<string>();

    /// <summary>
    /// The logical CPUs the ranks share when they all run on this machine, which decides how they are bound
    /// (<see cref="MpiLauncher.MpirunArguments"/>); <see langword="null"/> (the default) is <see cref="Environment.ProcessorCount"/>.
    /// </summary>
    public int? Cores { get; init; }

    /// <summary>The program each rank runs; <see langword="null"/> runs this program again (<see cref="MpiLauncher.SelfCommand"/>).</summary>
    public IReadOnlyList<string>? Command { get; init; }

    /// <summary>Where the ranks' standard error and the condensed failure line go; default <see cref="Console.Error"/>.</summary>
    public TextWriter? Error { get; init; }

    /// <summary>
    /// How many times a failed job is started again, every rank, as torchrun's <c>--max-restarts</c> does; 0 (the
    /// default) leaves a failed job failed. A job that ends with one of <see cref="FinalExitCodes"/>, or that was
    /// interrupted (Ctrl+C, SIGTERM), is not restarted.
    /// </summary>
    public int MaxRestarts { get; init; }

    /// <summary>The program's arguments for a restart (e.g. with <c>--resume</c> added); <see langword="null"/> repeats the first ones.</summary>
    public IReadOnlyList<string>? RestartArguments { get; init; }

    /// <summary>
    /// Exit codes that end the job without a restart: a restart would fail the same way. Default 2 and 3, the
    /// generated trainer's usage error and divergence.
    /// </summary>
    public IReadOnlyCollection<int> FinalExitCodes { get; init; } = new[] { 2, 3 };
}

/// <summary>
/// Starting a job of N ranks the way a user expects: a program asked for world size N that was not itself started by
/// a launcher runs itself again under <c>mpirun -np N --oversubscribe</c> with the same arguments and returns its exit
/// code; a program started by <c>mpirun</c> or <c>srun</c> just uses the ranks it was given. Failures end the whole
/// job with one line that names the rank, never a hang.
/// </summary>
/// <example>
/// <code>
/// if (MpiLauncher.ShouldRelaunch(worldSize))
///     return MpiLauncher.Relaunch(args, worldSize);
/// using var group = ProcessGroup.Create(CommBackend.Auto, device);
/// return MpiLauncher.RunRank(group, () => Train(group));
/// </code>
/// </example>
public static class MpiLauncher
{
    /// <summary>The exit code when <c>mpirun</c> is missing (a usage problem, like a bad option).</summary>
    public const int MissingMpirunExitCode = 2;

    /// <summary>The line printed when <c>mpirun</c> is missing.</summary>
    public const string MissingMpirunMessage = "error: mpirun was not found; install Open MPI: apt-get install openmpi-bin";

    /// <summary>
    /// The environment variable that tells every rank how many times the job has been restarted (0 at the first start),
    /// as torchrun's <c>TORCHELASTIC_RESTART_COUNT</c> does.
    /// </summary>
    public const string RestartCountVariable = "MODELDSL_RESTART_COUNT";

    /// <summary>The restart count <see cref="Relaunch"/> gave this rank (<see cref="RestartCountVariable"/>); 0 when there is none.</summary>
    public static int RestartCount =>
        int.TryParse(Environment.GetEnvironmentVariable(RestartCountVariable), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n) ? n : 0;

    /// <summary>Whether a program asked for <paramref name="worldSize"/> ranks must start them itself (world size above 1, not already a rank).</summary>
    public static bool ShouldRelaunch(int worldSize) => worldSize > 1 && !DistributedEnvironment.IsMpiRank;

    /// <summary>
    /// The command that starts this program again: its executable (the apphost of <c>dotnet run</c> or a published
    /// program), or, when the process is the <c>dotnet</c> host (<c>dotnet x.dll</c>), the host and the entry assembly.
    /// </summary>
    public static IReadOnlyList<string> SelfCommand()
    {
        string process = Environment.ProcessPath
            ?? throw new InvalidOperationException("The path of this program's executable is unknown; pass MpiLaunchOptions.Command.");
        if (!string.Equals(Path.GetFileNameWithoutExtension(process), "dotnet", StringComparison.OrdinalIgnoreCase))
            return new[] { process };
        string? entry = Assembly.GetEntryAssembly()?.Location;
        if (string.IsNullOrEmpty(entry))
            throw new InvalidOperationException("This program runs under the dotnet host but its entry assembly has no path; pass MpiLaunchOptions.Command.");
        return new[] { process, entry };
    }

    /// <summary>
    /// Where the ranks run. On one machine with at least as many logical CPUs as ranks, each rank is bound to its own
    /// share of them, <c>cores / ranks</c> (the libtorch thread count a rank takes by default, as torchrun's
    /// <c>OMP_NUM_THREADS</c>): a synchronous step waits for the slowest rank, and an unbound rank that the kernel moves,
    /// or that shares a CPU with its peer's helper threads, is that rank (measured on a 2-core VM: 0.85–0.90 of the
    /// independent-process ceiling bound, 0.80–0.88 unbound, whose runs also fell to 0.4–0.7 now and then;
    /// docs/benchmarks.md). Oversubscribed (more ranks than CPUs) or across machines (a hostfile, whose CPU counts are
    /// not known here) nothing is bound: Open MPI would otherwise bind each rank to one core when there are at most two.
    /// A <c>--bind-to</c> or <c>--map-by</c> in <see cref="MpiLaunchOptions.MpirunArguments"/>, or Open MPI's
    /// <c>OMPI_MCA_hwloc_base_binding_policy</c>, decides instead.
    /// </summary>
    private static IEnumerable<string> Binding(int worldSize, MpiLaunchOptions options)
    {
        if (options.MpirunArguments.Contains("--bind-to") || options.MpirunArguments.Contains("--map-by")
            || Environment.GetEnvironmentVariable("OMPI_MCA_hwloc_base_binding_policy") is not null)
            return Array.Empty<string>();
        int cores = options.Cores ?? Environment.ProcessorCount;
        if (!string.IsNullOrEmpty(options.Hostfile) || worldSize > cores)
            return new[] { "--bind-to", "none" };
        return new[] { "--use-hwthread-cpus", "--map-by", $"slot:PE={cores / worldSize}" };
    }

    /// <summary>The arguments <see cref="Relaunch"/> passes to <c>mpirun</c>.</summary>
    public static IReadOnlyList<string> MpirunArguments(IReadOnlyList<string> args, int worldSize, MpiLaunchOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        if (!ModelDsl.Plans.PlanRules.WorldSize.Holds(worldSize))
            throw new ArgumentOutOfRangeException(nameof(worldSize), worldSize, $"The world size must be at least 1, got {worldSize}.");
        options ??= new MpiLaunchOptions();
        // --oversubscribe: more ranks than cores (or slots in the hostfile) is allowed, e.g. on a 2-core CI runner.
        var list = new List<string> { "-np", worldSize.ToString(System.Globalization.CultureInfo.InvariantCulture), "--oversubscribe" };
        list.AddRange(Binding(worldSize, options));
        // A rank waiting in a collective polls. Unbound ranks can land on one core (or share it with other work), and
        // then a spinning rank holds the core its peer needs for a whole time slice: measured here, 1 KB all-reduces
        // took 8–17 ms instead of microseconds. Yielding while idle avoids that at the cost of a system call per poll.
        if (!options.MpirunArguments.Contains("mpi_yield_when_idle")
            && Environment.GetEnvironmentVariable("OMPI_MCA_mpi_yield_when_idle") is null)
        {
            list.Add("--mca");
            list.Add("mpi_yield_when_idle");
            list.Add("1");
        }
        if (!string.IsNullOrEmpty(options.Hostfile))
        {
            list.Add("--hostfile");
            list.Add(options.Hostfile);
        }
        // Ranks on other machines see the restart count too (local ones inherit it anyway).
        if (options.MaxRestarts > 0)
        {
            list.Add("-x");
            list.Add(RestartCountVariable);
        }
        list.AddRange(options.MpirunArguments);
        list.AddRange(options.Command ?? SelfCommand());
        list.AddRange(args);
        return list;
    }

    /// <summary>
    /// Runs <c>mpirun -np <paramref name="worldSize"/> --oversubscribe</c> on this program (or
    /// <see cref="MpiLaunchOptions.Command"/>) with <paramref name="args"/>, waits for the job and returns its exit
    /// code. The ranks' output passes through; <c>mpirun</c>'s own failure reports are condensed to one line naming
    /// the rank (<see cref="MpirunOutputFilter"/>). As root, sets the two variables Open MPI requires to run as root;
    /// with standard output redirected, sets <c>TERM=dumb</c> for the ranks (no terminal control codes in the file).
    /// With <see cref="MpiLaunchOptions.MaxRestarts"/> above 0, a job that fails (a rank killed, crashed or exiting
    /// with a code not in <see cref="MpiLaunchOptions.FinalExitCodes"/>) is started again, every rank, with
    /// <see cref="MpiLaunchOptions.RestartArguments"/>, up to that many times; each restart is one line on the error
    /// writer, and the ranks read the count from <see cref="RestartCountVariable"/>.
    /// </summary>
    /// <returns>The job's exit code (the last attempt's): 0 when every rank succeeded; <see cref="MissingMpirunExitCode"/> when <c>mpirun</c> is missing.</returns>
    public static int Relaunch(string[] args, int worldSize, MpiLaunchOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        options ??= new MpiLaunchOptions();
        if (!ModelDsl.Plans.PlanRules.MaxRestarts.Holds(options.MaxRestarts))
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxRestarts, $"MaxRestarts must be 0 or more, got {options.MaxRestarts}.");
        TextWriter error = options.Error ?? Console.Error;
        var mpirunArgs = MpirunArguments(args, worldSize, options);
        string? mpirun = FindExecutable(options.Mpirun);
        if (mpirun is null)
        {
            error.WriteLine(MissingMpirunMessage);
            return MissingMpirunExitCode;
        }

        for (int restarts = 0; ; restarts++)
        {
            var (code, failure, interrupted) = RunJob(mpirun, mpirunArgs, restarts, error);
            if (code == 0 || interrupted || restarts >= options.MaxRestarts || options.FinalExitCodes.Contains(code))
                return code;
            error.WriteLine($"restart {restarts + 1} of {options.MaxRestarts}: {failure ?? $"the job failed with exit code {code}"}; " +
                            $"starting all {worldSize} ranks again from the last checkpoint");
            if (restarts == 0 && options.RestartArguments is not null)
                mpirunArgs = MpirunArguments(options.RestartArguments, worldSize, options);
        }
    }

    /// <summary>One start of the job: its exit code, the condensed cause of a failure (without "error: "), and whether it was interrupted.</summary>
    private static (int Code, string? Failure, bool Interrupted) RunJob(string mpirun, IReadOnlyList<string> mpirunArgs, int restarts, TextWriter error)
    {
        var start = new ProcessStartInfo(mpirun)
        {
            UseShellExecute = false,
            RedirectStandardError = true,
        };
        foreach (string a in mpirunArgs)
            start.ArgumentList.Add(a);
        // Open MPI gives each rank a pseudo-terminal for stdout, so .NET writes terminal control codes (ESC [?1h ESC =)
        // and progress bars render live; when this program's own output goes to a file or a pipe, tell the ranks
        // there is no terminal to drive.
        if (Console.IsOutputRedirected)
            start.Environment["TERM"] = "dumb";
        if (IsRoot())
        {
            start.Environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
            start.Environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        }
        start.Environment[RestartCountVariable] = restarts.ToString(System.Globalization.CultureInfo.InvariantCulture);

        using var process = new Process { StartInfo = start };
        var filter = new MpirunOutputFilter(line =>
        {
            lock (error)
                error.WriteLine(line);
        });
        var done = new ManualResetEventSlim();
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
                done.Set();
            else
                filter.WriteLine(e.Data);
        };
        bool interrupted = false;
        process.Start();
        // Ctrl+C reaches mpirun too (same process group), and mpirun stops the ranks; this process waits for it
        // instead of dying first. SIGTERM (e.g. from a scheduler) is passed on. Neither is restarted.
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c =>
        {
            c.Cancel = true;
            interrupted = true;
        });
        using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c =>
        {
            c.Cancel = true;
            interrupted = true;
            SendSignal(process.Id, 15);
        });
        process.BeginErrorReadLine();
        process.WaitForExit();
        done.Wait(TimeSpan.FromSeconds(5));
        filter.Complete();
        string? failure = filter.FailureLine ?? filter.FirstRankError;
        if (failure is not null)
        {
            failure = failure.StartsWith("error: ", StringComparison.Ordinal) ? failure["error: ".Length..] : failure;
            failure = failure.EndsWith("; the job was stopped.", StringComparison.Ordinal) ? failure[..^"; the job was stopped.".Length] : failure.TrimEnd('.');
        }
        return (process.ExitCode, failure, interrupted);
    }

    /// <summary>
    /// Runs one rank's work so that its failure ends the whole job: an exception prints one line naming this rank and
    /// the exception and aborts every rank (<see cref="ProcessGroup.Abort(Exception, int)"/>); a non-zero result
    /// does the same. In a group of one the exception propagates and the result is returned as it is.
    /// </summary>
    public static int RunRank(ProcessGroup group, Func<int> body)
    {
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(body);
        if (group.WorldSize == 1)
            return body();
        int code;
        try
        {
            code = body();
        }
        catch (Exception e)
        {
            group.Abort(e);
            return 1;
        }
        if (code != 0)
            group.Abort($"exited with code {code}", code);
        return code;
    }

    /// <summary>Resolves <paramref name="name"/> on <c>PATH</c> (or checks it, if it is a path); <see langword="null"/> when there is no such executable file.</summary>
    public static string? FindExecutable(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name.Contains('/', StringComparison.Ordinal))
            return File.Exists(name) ? Path.GetFullPath(name) : null;
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, name);
            if (File.Exists(candidate))
                return candidate;
        }
        return null;
    }

    [DllImport("libc", EntryPoint = "geteuid")]
    private static extern uint GetEffectiveUserId();

    [DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);

    private static bool IsRoot()
    {
        try
        {
            return OperatingSystem.IsLinux() || OperatingSystem.IsMacOS() ? GetEffectiveUserId() == 0 : false;
        }
        catch (DllNotFoundException)
        {
            return Environment.UserName == "root";
        }
    }

    private static void SendSignal(int pid, int signal)
    {
        try
        {
            Kill(pid, signal);
        }
        catch (DllNotFoundException)
        {
        }
    }
}
