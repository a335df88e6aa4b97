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

    /// <summary>The program each rank runs; <see langword="null"/> runs this program again (<see cref="MpiLauncher.SelfCommand"/>).</summary>
    public IReadOnlyList<string>? Command { get; init; }

    /// <summary>Where the ranks' standard error and the condensed failure line go; default <see cref="Console.Error"/>.</summary>
    public TextWriter? Error { get; init; }
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

    /// <summary>The arguments <see cref="Relaunch"/> passes to <c>mpirun</c>.</summary>
    public static IReadOnlyList<string> MpirunArguments(IReadOnlyList<string> args, int worldSize, MpiLaunchOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        if (worldSize < 1)
            throw new ArgumentOutOfRangeException(nameof(worldSize), worldSize, $"The world size must be at least 1, got {worldSize}.");
        options ??= new MpiLaunchOptions();
        // --oversubscribe: more ranks than cores (or slots in the hostfile) is allowed, e.g. on a 2-core CI runner.
        var list = new List<string> { "-np", worldSize.ToString(System.Globalization.CultureInfo.InvariantCulture), "--oversubscribe" };
        // Open MPI binds each rank to one core when there are at most 2 ranks (to a socket above that). A rank's
        // libtorch thread pool would then share that one core, and on a machine with other work a pinned rank cannot
        // move to an idle core. PyTorch's launchers do not bind either; pass --bind-to in MpirunArguments to choose.
        if (!options.MpirunArguments.Contains("--bind-to"))
        {
            list.Add("--bind-to");
            list.Add("none");
        }
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
    /// </summary>
    /// <returns>The job's exit code: 0 when every rank succeeded; <see cref="MissingMpirunExitCode"/> when <c>mpirun</c> is missing.</returns>
    public static int Relaunch(string[] args, int worldSize, MpiLaunchOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        options ??= new MpiLaunchOptions();
        TextWriter error = options.Error ?? Console.Error;
        var mpirunArgs = MpirunArguments(args, worldSize, options);
        string? mpirun = FindExecutable(options.Mpirun);
        if (mpirun is null)
        {
            error.WriteLine(MissingMpirunMessage);
            return MissingMpirunExitCode;
        }

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
        process.Start();
        // Ctrl+C reaches mpirun too (same process group), and mpirun stops the ranks; this process waits for it
        // instead of dying first. SIGTERM (e.g. from a scheduler) is passed on.
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => c.Cancel = true);
        using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c =>
        {
            c.Cancel = true;
            SendSignal(process.Id, 15);
        });
        process.BeginErrorReadLine();
        process.WaitForExit();
        done.Wait(TimeSpan.FromSeconds(5));
        filter.Complete();
        return process.ExitCode;
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
