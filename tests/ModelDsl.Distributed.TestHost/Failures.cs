using System;
using System.Runtime.InteropServices;
using System.Threading;
using ModelDsl.Runtime.Distributed;
using static TorchSharp.torch;

namespace ModelDsl.Distributed.TestHost;

/// <summary>
/// Deliberate failures: the last rank fails while the others wait in a collective that would never complete
/// without the launcher stopping them. The tests assert the job ends quickly with one line naming the rank.
/// </summary>
internal static class Failures
{
    /// <summary>An exception nobody catches: the runtime's handler prints the rank and aborts the job.</summary>
    public static int ThrowUnhandled(ProcessGroup group)
    {
        group.Barrier();
        if (group.Rank == group.WorldSize - 1)
            throw new InvalidOperationException($"deliberate failure on rank {group.Rank}");
        WaitForever(group);
        return 0;
    }

    /// <summary>The same failure inside <see cref="MpiLauncher.RunRank"/>.</summary>
    public static int ThrowGuarded(ProcessGroup group)
    {
        group.Barrier();
        if (group.Rank == group.WorldSize - 1)
            throw new InvalidOperationException($"deliberate failure on rank {group.Rank}", new TimeoutException("the inner cause"));
        WaitForever(group);
        return 0;
    }

    /// <summary>The last rank returns exit code 3 (from <see cref="MpiLauncher.RunRank"/>, or straight from Main).</summary>
    public static int ExitCode(ProcessGroup group)
    {
        group.Barrier();
        if (group.Rank == group.WorldSize - 1)
            return 3;
        WaitForever(group);
        return 0;
    }

    /// <summary>Every rank says which attempt of the job it is (after a restart, <see cref="MpiLauncher.RestartCount"/> &gt; 0).</summary>
    public static int Attempt(ProcessGroup group)
    {
        group.Barrier();
        Console.WriteLine($"rank {group.Rank} of {group.WorldSize}: restart count {MpiLauncher.RestartCount}");
        return 0;
    }

    /// <summary>The last rank kills itself with SIGKILL (what the OOM killer or kill -9 does) in the middle of all-reduces.</summary>
    public static int KillSelf(ProcessGroup group)
    {
        using var t = ones(1 << 18);
        for (int i = 0; ; i++)
        {
            if (i == 3 && group.Rank == group.WorldSize - 1)
            {
                Console.Out.Flush();
                Kill(Environment.ProcessId, 9);
            }
            group.AllReduce(t, ReduceOp.Avg);
        }
    }

    /// <summary>
    /// A NullReferenceException after MPI_Init is an ordinary .NET exception (Open MPI's own SIGSEGV handler would
    /// otherwise catch the fault first and kill the process).
    /// </summary>
    public static int NullReference(ProcessGroup group)
    {
        string? nothing = Environment.GetEnvironmentVariable("MODELDSL_SURELY_UNSET_VARIABLE");
        try
        {
            _ = nothing!.Length;
            Console.WriteLine($"FAIL rank {group.Rank}: no exception");
            return 1;
        }
        catch (NullReferenceException)
        {
            group.Barrier();
            Console.WriteLine($"PASS rank {group.Rank}: nullref: caught NullReferenceException");
            return 0;
        }
    }

    private static void WaitForever(ProcessGroup group)
    {
        using var t = ones(4);
        group.AllReduce(t);
        Thread.Sleep(Timeout.Infinite);
    }

    [DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);
}
