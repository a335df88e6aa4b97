using System.IO;

namespace ModelDsl.Runtime.Tests;

/// <summary>What a generated <c>Run(args)</c> returned and printed, run in this process.</summary>
public sealed record CliResult(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}\nstdout:\n{Stdout}\nstderr:\n{Stderr}";
}

/// <summary>
/// Runs a generated trainer's command line in-process with stdout and stderr captured (callers are in
/// <see cref="GlobalTorchStateCollection"/>, so nothing else writes to the console meanwhile).
/// </summary>
public static class CliCapture
{
    public static CliResult Run(Func<string[], int> run, params string[] args)
    {
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        Console.SetOut(stdout);
        Console.SetError(stderr);
        try
        {
            int code = run(args);
            return new CliResult(code, stdout.ToString(), stderr.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }
}
