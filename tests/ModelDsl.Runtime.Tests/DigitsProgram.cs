using System.Diagnostics;
using System.IO;

namespace ModelDsl.Runtime.Tests;

/// <summary>What a run of a program printed and returned.</summary>
internal sealed record ProcessResult(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}\nstdout:\n{Stdout}\nstderr:\n{Stderr}";
}

/// <summary>The Digits sample (the main job), built in the same configuration as the tests, run as a real process.</summary>
internal static class DigitsProgram
{
    public static ProcessResult Run(string workingDirectory, params string[] args)
    {
        using var process = Start(workingDirectory, args);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(8)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException("Digits did not finish: " + string.Join(" ", args));
        }
        return new ProcessResult(process.ExitCode, stdout.Result, stderr.Result);
    }

    public static Process Start(string workingDirectory, string[] args)
    {
        var info = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory,
        };
        info.ArgumentList.Add(Dll());
        foreach (var a in args) info.ArgumentList.Add(a);
        return Process.Start(info)!;
    }

    /// <summary>The sample built in the same configuration as these tests.</summary>
    public static string Dll()
    {
        var testBin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string configuration = testBin.Parent!.Name;
        var dll = Path.Combine(RepoRoot(), "samples", "Digits", "bin", configuration, testBin.Name, "Digits.dll");
        Assert.True(File.Exists(dll), "the Digits sample is not built at " + dll);
        return dll;
    }

    public static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "ModelDsl.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("ModelDsl.sln not found");
    }
}
