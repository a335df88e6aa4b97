using System;
using System.IO;
using System.Linq;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Running;

// Full run:   dotnet run -c Release --project tests/ModelDsl.Benchmarks -- --filter '*'
// Quick run:  add BenchmarkDotNet's own switches, e.g. `--job short` (3 warm-ups, 3 iterations); see docs/benchmarks.md.
// Interleaved A/B cross-check of the forward/backward ratio (no BenchmarkDotNet):  -- --interleaved
// The same for the trainer's optimisation step against the hand-written one:        -- --interleaved-step
// Pruning/quantisation speed-ups in interleaved rounds, with the PyTorch peer:         -- --optimization [rounds [threads]]
// The generator against System.Text.Json's, full run and after an unrelated edit, interleaved rounds: -- --generator-vs-json [rounds]
// ModelDsl's full run alone in a loop (for a profiler), then allocation and generated size per generator: -- --generator-profile [seconds]
// The int8 kernel per dispatch path vs fp32, 1 and 2 threads, with PyTorch's int8 peer: -- --int8-kernels [rounds]
// One-row int8 Linear calls (cached generation's), CharGpt's shapes, fp32 vs each kernel:   -- --int8-rows [rounds]
// The main job's Digits CNN, fp32 against optimised variants, batch 1/64, 1 and 2 threads: -- --digits-optimized [rounds]
// Results go to tests/ModelDsl.Benchmarks/BenchmarkDotNet.Artifacts unless --artifacts says otherwise.
// The GPT block (generated vs hand-written, interleaved) and the sample GPT's tokens/s, fp32 and int8:          -- --gpt [rounds]
// Generation alone, with and without the key/value cache, fp32 and int8, interleaved:        -- --gpt-generation [rounds [threads]]
// LargeGpt's shape (31.6M), cached generation, fp32 against int8, interleaved:             -- --large-gpt-generation [rounds [threads]]
// Distributed runtime, two ranks under mpirun (needs Open MPI; not BenchmarkDotNet):  -- --allreduce, -- --ddp-scaling, -- --ddp-overlap
// DDP against ZeRO stages 1 and 2 at two ranks: model-state bytes per rank, step time (peer: zero_peer.py): -- --zero [steps [rounds]]
// The trainer's overhead over the bare step on CharGpt, in timed phases, interleaved:    -- --trainer-overhead [rounds [steps [threads]]]
// The same on Digits MLP/CNN (samples/s, bare epoch loop vs the trainer's epoch):           -- --trainer-overhead-digits [rounds [threads]]
// Local SGD / DiLoCo against sync DDP on Digits: bytes, time, accuracy, docs/local_sgd.png: -- --local-sgd [epochs]
// activation recomputation against the plain step: activation bytes and ms/step on GPT block stacks: -- --recompute [rounds [threads]]
// bf16 mixed precision against fp32: the trainer's step on Digits MLP/CNN, CharGpt, a wide MLP: -- --bf16 [rounds [threads]]
// ONNX Runtime on our exported models beside our runtime, batch 1 and 64, fp32 and int8:   -- --onnx [rounds [threads]]
if (args.Length == 1 && args[0] == "--interleaved")
{
    ModelDsl.Benchmarks.InterleavedCheck.Run();
    return 0;
}
if (args.Length == 1 && args[0] == "--interleaved-step")
{
    ModelDsl.Benchmarks.InterleavedCheck.RunTrainerStep();
    return 0;
}
if (args.Length is >= 1 and <= 3 && args[0] == "--optimization")
{
    ModelDsl.Benchmarks.OptimizationBenchmarks.RunInterleaved(args.Length >= 2 ? int.Parse(args[1]) : 15, args.Length == 3 ? int.Parse(args[2]) : 2);
    return 0;
}
if (args.Length is 1 or 2 && args[0] == "--generator-vs-json")
{
    if (!CountArgument(args, "rounds", 200, out int rounds)) return 2;
    ModelDsl.Benchmarks.GeneratorVsJsonBenchmarks.RunInterleaved(rounds);
    return 0;
}
if (args.Length is 1 or 2 && args[0] == "--generator-profile")
{
    if (!CountArgument(args, "seconds", 30, out int seconds)) return 2;
    ModelDsl.Benchmarks.GeneratorVsJsonBenchmarks.RunModelDslFullRuns(seconds);
    return 0;
}
if (args.Length is 1 or 2 && args[0] == "--int8-kernels")
{
    ModelDsl.Benchmarks.Int8KernelBenchmarks.Run(args.Length == 2 ? int.Parse(args[1]) : 15);
    return 0;
}

if (args.Length is 1 or 2 && args[0] == "--int8-rows")
{
    ModelDsl.Benchmarks.Int8KernelBenchmarks.RunRows(args.Length == 2 ? int.Parse(args[1]) : 15);
    return 0;
}

if (args.Length is >= 1 and <= 3 && args[0] == "--onnx")
{
    ModelDsl.Benchmarks.OnnxRuntimeBenchmarks.Run(args.Length >= 2 ? int.Parse(args[1]) : 15, args.Length == 3 ? int.Parse(args[2]) : 2);
    return 0;
}

if (args.Length is 1 or 2 && args[0] == "--digits-optimized")
{
    ModelDsl.Benchmarks.DigitsOptimizedBenchmarks.Run(args.Length == 2 ? int.Parse(args[1]) : 15);
    return 0;
}

if (args.Length is 1 or 2 && args[0] == "--local-sgd")
    return ModelDsl.Benchmarks.LocalSgdBenchmarks.Run(args);

if (args.Length is 1 or 2 && args[0] == "--gpt")
{
    ModelDsl.Benchmarks.GptBlockBenchmarks.RunInterleaved(args.Length == 2 ? int.Parse(args[1]) : 30);
    return 0;
}

if (args.Length is >= 1 and <= 3 && args[0] == "--gpt-generation")
{
    var gpt = new ModelDsl.Benchmarks.GptThroughputBenchmarks { Threads = args.Length == 3 ? int.Parse(args[2]) : 2 };
    gpt.Setup();
    ModelDsl.Benchmarks.GptBlockBenchmarks.RunGeneration(gpt, args.Length >= 2 ? int.Parse(args[1]) : 7);
    return 0;
}

if (args.Length is >= 1 and <= 3 && args[0] == "--large-gpt-generation")
{
    ModelDsl.Benchmarks.GptBlockBenchmarks.RunLargeGeneration(args.Length >= 2 ? int.Parse(args[1]) : 5, args.Length == 3 ? int.Parse(args[2]) : 1);
    return 0;
}

if (args.Length is >= 1 and <= 3 && args[0] == "--trainer-overhead-digits")
    return ModelDsl.Benchmarks.TrainerOverheadBenchmarks.RunDigits(args.Length >= 2 ? int.Parse(args[1]) : 5, args.Length == 3 ? int.Parse(args[2]) : 1);
if (args.Length is >= 1 and <= 4 && args[0] == "--trainer-overhead")
    return ModelDsl.Benchmarks.TrainerOverheadBenchmarks.Run(args.Length >= 2 ? int.Parse(args[1]) : 5, args.Length >= 3 ? int.Parse(args[2]) : 40,
        args.Length == 4 ? int.Parse(args[3]) : 2);

if (args.Length is >= 1 and <= 3 && args[0] == "--recompute")
    return ModelDsl.Benchmarks.RecomputeBenchmarks.Run(args.Length >= 2 ? int.Parse(args[1]) : 5, args.Length == 3 ? int.Parse(args[2]) : 2);

if (args.Length is >= 1 and <= 3 && args[0] == "--bf16")
    return ModelDsl.Benchmarks.MixedPrecisionBenchmarks.Run(args.Length >= 2 ? int.Parse(args[1]) : 7, args.Length == 3 ? int.Parse(args[2]) : 2);

if (args.Length is >= 1 and <= 3 && args[0] == "--zero")
    return ModelDsl.Benchmarks.ZeroBenchmarks.Run(args);

if (args.Length >= 1 && args[0] is "--allreduce" or "--ddp-overlap" or "--ddp-scaling")
    return ModelDsl.Benchmarks.DistributedBenchmarks.Run(args);

var config = DefaultConfig.Instance;
if (!args.Any(a => a.Equals("--artifacts", StringComparison.OrdinalIgnoreCase)) && FindProjectDirectory() is { } projectDir)
    config = config.WithArtifactsPath(Path.Combine(projectDir, "BenchmarkDotNet.Artifacts"));

BenchmarkSwitcher.FromAssembly(typeof(ModelDsl.Benchmarks.ForwardBackwardBenchmarks).Assembly).Run(args, config);
return 0;

// `--option [N]`: N (at least 1) or the default; false, after one error line, when N is not such a number.
static bool CountArgument(string[] args, string what, int fallback, out int value)
{
    value = fallback;
    if (args.Length < 2 || (int.TryParse(args[1], out value) && value >= 1)) return true;
    Console.Error.WriteLine($"error: {args[0]} takes a number of {what} of at least 1 (default {fallback}), got '{args[1]}'");
    return false;
}

static string? FindProjectDirectory()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        if (File.Exists(Path.Combine(dir.FullName, "ModelDsl.Benchmarks.csproj")))
            return dir.FullName;
    }
    return null;
}
