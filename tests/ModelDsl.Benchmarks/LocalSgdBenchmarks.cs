using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using ModelDsl.Runtime.Distributed;
using ModelDsl.Runtime.Training;
using ScottPlot;

namespace ModelDsl.Benchmarks;

/// <summary>
/// <c>-- --local-sgd [epochs]</c>: the Digits CNN trained by its generated trainer on two ranks, synchronous DDP
/// against local SGD at SyncEvery k ∈ {1, 4, 16}, with and without DiLoCo's outer Nesterov step, all at equal epochs
/// (and one process as the reference). Prints a Markdown table (test accuracy, bytes each rank sent, wall time,
/// averaging rounds, hidden averaging time) and writes <c>docs/local_sgd.png</c>: validation accuracy per epoch
/// against the bytes sent so far. Needs Open MPI and the sample built (<c>dotnet build -c Release samples/Digits</c>).
/// </summary>
internal static class LocalSgdBenchmarks
{
    private sealed record Config(string Name, string[] Args);

    public static int Run(string[] args)
    {
        int epochs = args.Length >= 2 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 20;
        string root = RepoFiles.Root();
        string dll = Path.Combine(root, "samples", "Digits", "bin", "Release", "net10.0", "Digits.dll");
        if (!File.Exists(dll))
        {
            Console.Error.WriteLine($"error: build the sample first: dotnet build -c Release samples/Digits ({dll} is missing)");
            return 2;
        }

        var configs = new List<Config>
        {
            new("one process", new[] { "--world-size", "1" }),
            new("sync DDP", new[] { "--world-size", "2" }),
        };
        foreach (string outer in new[] { "none", "nesterov" })
            foreach (int k in new[] { 1, 4, 16 })
                configs.Add(new($"async k={k}" + (outer == "nesterov" ? " + Nesterov" : ""),
                    new[] { "--world-size", "2", "--mode", "async", "--sync-every", k.ToString(CultureInfo.InvariantCulture), "--outer-optimizer", outer }));

        string work = Directory.CreateTempSubdirectory("modeldsl-localsgd-").FullName;
        var results = new List<(Config Config, TrainingReport Report, double Wall)>();
        foreach (var config in configs)
        {
            string dir = Path.Combine(work, results.Count.ToString(CultureInfo.InvariantCulture));
            var arguments = new List<string> { dll, "--epochs", epochs.ToString(CultureInfo.InvariantCulture), "--no-optimize", "--plain",
                "--checkpoint-dir", Path.Combine(dir, "ck"), "--report", Path.Combine(dir, "report.json") };
            arguments.AddRange(config.Args);
            var clock = Stopwatch.StartNew();
            int code = RunDotnet(Path.Combine(root, "samples", "Digits"), arguments);
            double wall = clock.Elapsed.TotalSeconds;
            if (code != 0)
            {
                Console.Error.WriteLine($"error: {config.Name} exited with code {code}");
                return 1;
            }
            var report = TrainingReport.Read(Path.Combine(dir, "report.json"));
            results.Add((config, report, wall));
            Console.Error.WriteLine($"{config.Name}: test accuracy {report.TestAccuracy:P2}, {wall:F1} s");
        }

        long syncBytes = results[1].Report.GetSection<DistributedReport>("distributed")!.BytesCommunicated;
        Console.WriteLine($"Digits CNN, {epochs} epochs, batch 64 per rank, AdamW (the sample's plan); bytes = payload each rank handed to collectives.");
        Console.WriteLine();
        Console.WriteLine("| run | test accuracy | bytes sent per rank | vs sync DDP | rounds | wall s | train s | averaging s waited | hidden s |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var (config, report, wall) in results)
        {
            var d = report.GetSection<DistributedReport>("distributed");
            string bytes = d is null ? "0" : Mb(d.BytesCommunicated);
            string ratio = d is null ? "–" : $"{(double)syncBytes / d.BytesCommunicated:0.0}× less";
            Console.WriteLine($"| {config.Name} | {report.TestAccuracy:P2} | {bytes} | {ratio} | {d?.SyncRounds?.ToString(CultureInfo.InvariantCulture) ?? "–"} | {wall:F1} | {report.TrainSeconds:F1} | {d?.CommSeconds?.ToString("F2", CultureInfo.InvariantCulture) ?? "–"} | {d?.CommSecondsHidden?.ToString("F2", CultureInfo.InvariantCulture) ?? "–"} |");
        }

        string png = Path.Combine(root, "docs", "local_sgd.png");
        Plot(png, results.Skip(1).Select(r => (r.Config.Name, r.Report)).ToList());
        Console.WriteLine();
        Console.WriteLine($"plot: {png}");
        Directory.Delete(work, recursive: true);
        return 0;
    }

    /// <summary>Validation accuracy after each epoch against the bytes sent by then (each epoch sends the same share).</summary>
    private static void Plot(string path, List<(string Name, TrainingReport Report)> runs)
    {
        var plot = new Plot();
        foreach (var (name, report) in runs)
        {
            long bytes = report.GetSection<DistributedReport>("distributed")!.BytesCommunicated;
            var points = report.History.Where(h => h.ValAccuracy is not null).ToArray();
            double[] xs = points.Select(h => Math.Log10((double)bytes * h.Epoch / report.Epochs)).ToArray();
            double[] ys = points.Select(h => h.ValAccuracy!.Value * 100).ToArray();
            var scatter = plot.Add.Scatter(xs, ys);
            scatter.LegendText = $"{name} (test {report.TestAccuracy:P1})";
            scatter.MarkerSize = 4;
        }
        plot.Title("Digits CNN on 2 ranks: validation accuracy per epoch vs bytes sent");
        plot.XLabel("log10(bytes sent per rank so far)");
        plot.YLabel("validation accuracy (%)");
        plot.Axes.SetLimitsY(90, 100);
        plot.ShowLegend(Alignment.LowerRight);
        plot.SavePng(path, 1000, 600);
    }

    private static string Mb(long bytes) => $"{bytes / 1e6:F1} MB";

    private static int RunDotnet(string workingDirectory, IEnumerable<string> args)
    {
        // The trainers' own output (layer table, epochs) is dropped: stdout is the table; errors still show.
        var info = new ProcessStartInfo("dotnet") { WorkingDirectory = workingDirectory, UseShellExecute = false, RedirectStandardOutput = true };
        foreach (string a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return process.ExitCode;
    }
}
