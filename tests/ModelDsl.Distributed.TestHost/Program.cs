using System;
using System.Linq;
using ModelDsl;
using ModelDsl.Distributed.TestHost;
using ModelDsl.Runtime.Distributed;
using static TorchSharp.torch;

// Usage: TestHost <scenario> [args]        as a rank under mpirun (or alone: world size 1)
//        TestHost launch <np> <scenario>   relaunches itself under mpirun through MpiLauncher, as a trainer would
if (args.Length == 0)
{
    Console.Error.WriteLine("usage: TestHost <scenario> | launch <np> <scenario>");
    return 2;
}
if (args[0] == "launch")
    return MpiLauncher.Relaunch(args.Skip(2).ToArray(), int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture));
// TestHost launch-restarts <np> <max-restarts> <scenario>: the same, restarting a failed job up to max-restarts times.
if (args[0] == "launch-restarts")
    return MpiLauncher.Relaunch(args.Skip(3).ToArray(), int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture),
        new MpiLaunchOptions { MaxRestarts = int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) });

set_num_threads(1);
using var group = ProcessGroup.Create(CommBackend.Auto, CPU);
return args[0] switch
{
    "info" => MpiLauncher.RunRank(group, () =>
    {
        // Which cores the rank may run on (the launcher asks Open MPI not to bind ranks to one core each).
        string cpus = System.IO.File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("Cpus_allowed_list:", StringComparison.Ordinal))?.Split(':')[1].Trim() ?? "?";
        Console.WriteLine($"rank {group.Rank} of {group.WorldSize} backend {group.Backend} cpus {cpus}");
        return 0;
    }),
    "collectives" => MpiLauncher.RunRank(group, () => Collectives.Run(group)),
    "ddp" => MpiLauncher.RunRank(group, () => Ddp.Run(group)),
    "localsgd" => MpiLauncher.RunRank(group, () => LocalSgd.Run(group)),
    "zero" => MpiLauncher.RunRank(group, () => Zero.Run(group)),
    "zero3-recompute" => MpiLauncher.RunRank(group, () => Zero3Recompute.Run(group)),
    "accumulation" => MpiLauncher.RunRank(group, () => Accumulation.Run(group)),
    "bf16" => MpiLauncher.RunRank(group, () => MixedPrecision.Run(group)),
    "throw" => Failures.ThrowUnhandled(group),
    "throw-guarded" => MpiLauncher.RunRank(group, () => Failures.ThrowGuarded(group)),
    "exit-code" => MpiLauncher.RunRank(group, () => Failures.ExitCode(group)),
    "exit-code-unguarded" => Failures.ExitCode(group),
    "kill" => Failures.KillSelf(group),
    "kill-first-attempt" => MpiLauncher.RestartCount == 0 ? Failures.KillSelf(group) : MpiLauncher.RunRank(group, () => Failures.Attempt(group)),
    "nullref" => MpiLauncher.RunRank(group, () => Failures.NullReference(group)),
    _ => Usage(args[0]),
};

static int Usage(string scenario)
{
    Console.Error.WriteLine($"error: unknown scenario '{scenario}'");
    return 2;
}
