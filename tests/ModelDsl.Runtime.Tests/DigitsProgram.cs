using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using ModelDsl.Runtime.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>What a run of a program printed and returned.</summary>
public sealed record ProcessResult(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}\nstdout:\n{Stdout}\nstderr:\n{Stderr}";
}

/// <summary>The Digits sample (the main job), built in the same configuration as the tests, run as a real process.</summary>
public static class DigitsProgram
{
    public static ProcessResult Run(string workingDirectory, params string[] args)
    {
        using var process = Start(workingDirectory, args);
        return Wait(process, "Digits " + string.Join(" ", args));
    }

    public static Process Start(string workingDirectory, string[] args) =>
        StartProgram(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet", workingDirectory, new[] { Dll() }.Concat(args));

    /// <summary>Runs another sample of the repository (samples/NAME, built with the tests) to its end.</summary>
    public static ProcessResult RunSample(string sample, string workingDirectory, params string[] args) =>
        RunProgram(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet", workingDirectory, new[] { Dll(sample) }.Concat(args));

    /// <summary>Runs any program to its end (8 minutes at most) and returns what it printed.</summary>
    public static ProcessResult RunProgram(string program, string workingDirectory, IEnumerable<string> args)
    {
        using var process = StartProgram(program, workingDirectory, args);
        return Wait(process, program + " " + string.Join(" ", args));
    }

    private static Process StartProgram(string program, string workingDirectory, IEnumerable<string> args)
    {
        var info = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory,
        };
        foreach (var a in args) info.ArgumentList.Add(a);
        return Process.Start(info)!;
    }

    private static ProcessResult Wait(Process process, string what)
    {
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(8)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException(what + " did not finish");
        }
        return new ProcessResult(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Loads a checkpoint of one of the sample's models (with its own plan's optimiser) and returns each parameter's raw floats.</summary>
    public static Dictionary<string, float[]> Weights<TModel>(string path) where TModel : nn.Module, new()
    {
        var state = Checkpoint.ReadState(path);
        using var model = new TModel();
        var plan = model is Digits.DigitsCnn ? Digits.DigitsCnn.Plan : Digits.DigitsMlp.Plan;
        Checkpoint.Load(path, model, Trainer.CreateOptimizer(plan, model), state.ModelName, state.PlanFingerprint);
        return model.named_parameters().ToDictionary(p => p.name, p => p.parameter.data<float>().ToArray());
    }

    /// <summary>The sample built in the same configuration as these tests.</summary>
    public static string Dll(string sample = "Digits")
    {
        var testBin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string configuration = testBin.Parent!.Name;
        var dll = Path.Combine(RepoRoot(), "samples", sample, "bin", configuration, testBin.Name, sample + ".dll");
        Assert.True(File.Exists(dll), $"the {sample} sample is not built at {dll}");
        return dll;
    }

    public static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "ModelDsl.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("ModelDsl.sln not found");
    }
}
