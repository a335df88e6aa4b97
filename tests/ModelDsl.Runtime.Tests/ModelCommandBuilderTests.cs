using System.CommandLine;
using System.Linq;
using ModelDsl.Runtime.Inference;
using ModelDsl.Runtime.Training;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// The one builder of the subcommands beside <c>train</c> (evaluate, predict, export, generate, lr-find): options in
/// help order with the CSV layout last, <c>--batch-size</c> checked, a language model refused by the CSV-row
/// commands before their body runs, and every problem one line with exit code 2.
/// </summary>
[Collection(nameof(GlobalTorchStateCollection))]
public sealed class ModelCommandBuilderTests
{
    private static readonly TrainingPlan Plan = new() { ModelName = "M", SampleShape = new long[] { 4 }, Loss = Loss.CrossEntropy, Optimizer = Optimizer.SGD };

    private static (Command Command, System.Func<TrainingPlan?> Seen) Build(TrainingPlan plan, bool rowsOnly)
    {
        TrainingPlan? seen = null;
        var builder = new ModelCommandBuilder(plan, "try", "a command").WithModel();
        builder.Add(new Option<string?>("--data"));
        builder.WithBatchSize("Samples per forward pass", () => 32).WithCsvLayout(rowsOnly);
        builder.Add(new Option<bool>("--json"));
        var command = builder.Build((parsed, runPlan) =>
        {
            seen = runPlan with { BatchSize = builder.BatchSize(parsed) };
            return 0;
        });
        return (command, () => seen);
    }

    private static CliResult Invoke(Command command, params string[] args)
    {
        var root = new RootCommand { command };
        return CliCapture.Run(a => root.Parse(a).Invoke(), args);
    }

    [Fact]
    public void Options_InTheOrderAdded_WithTheCsvLayoutLast()
    {
        var (command, _) = Build(Plan, rowsOnly: true);
        Assert.Equal(new[] { "--model", "--data", "--batch-size", "--json", "--header", "--label-column" },
            command.Options.Select(o => o.Name).Where(n => n.StartsWith("--", System.StringComparison.Ordinal) && n != "--help"));
    }

    [Fact]
    public void Body_GetsThePlanWithTheCsvLayoutApplied_AndTheBatchSize()
    {
        var (command, seen) = Build(Plan, rowsOnly: true);
        var run = Invoke(command, "try", "--header", "--label-column", "y", "--batch-size", "5");
        Assert.Equal(0, run.ExitCode);
        Assert.Equal((true, "y", 5), (seen()!.Header, seen()!.LabelColumn, seen()!.BatchSize));
        Invoke(command, "try");
        Assert.Equal(32, seen()!.BatchSize);
    }

    [Fact]
    public void BadBatchSize_IsOneLine_ExitCode2()
    {
        var (command, _) = Build(Plan, rowsOnly: false);
        var run = Invoke(command, "try", "--batch-size", "0");
        Assert.Equal(TrainingHost.UsageError, run.ExitCode);
        Assert.Equal("error: --batch-size must be at least 1, got 0", run.Stderr.Trim());
    }

    [Fact]
    public void LanguageModel_IsRefusedByACsvRowCommand_BeforeItsBody()
    {
        var (command, seen) = Build(Plan with { IsLanguageModel = true }, rowsOnly: true);
        var run = Invoke(command, "try");
        Assert.Equal(TrainingHost.UsageError, run.ExitCode);
        Assert.StartsWith("error: try reads CSV rows, and M is a language model", run.Stderr);
        Assert.Null(seen());
    }
}
