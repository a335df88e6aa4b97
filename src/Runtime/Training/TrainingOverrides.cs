using System;
using System.Collections.Generic;
using System.CommandLine;
using System.IO;
using ModelDsl.Plans;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// One command-line override of a training run, declared once: its option (name, help, default) and how its
    /// parsed value changes the run. A value it cannot take is a <see cref="TrainingException"/> (one line on
    /// stderr, exit code 2). The overrides apply in the order they are listed, so one may look at what an earlier
    /// one set (<c>--backend nccl</c> at <c>--device</c>).
    /// </summary>
    internal sealed record TrainingOverride(Option Option, Func<TrainingOptions, ParseResult, TrainingOptions> Apply)
    {
        /// <summary>An override that applies the option's value.</summary>
        public static TrainingOverride Of<T>(Option<T> option, Func<TrainingOptions, T, TrainingOptions> apply) =>
            new(option, (o, parsed) => apply(o, parsed.GetValue(option)!));

        /// <summary>An override of a plan setting whose range is <paramref name="rule"/>; the message names the option.</summary>
        public static TrainingOverride Of<T>(Option<T> option, RangeRule rule, Func<TrainingOptions, T, TrainingOptions> apply)
            where T : IConvertible, IFormattable =>
            new(option, (o, parsed) =>
            {
                T value = parsed.GetValue(option)!;
                if (!rule.Holds(value.ToDouble(System.Globalization.CultureInfo.InvariantCulture)))
                    throw new TrainingException(rule.Message(option.Name, value));
                return apply(o, value);
            });
    }

    /// <summary>The overrides of a generated trainer's command line, grouped by the plan area they change.</summary>
    internal static class TrainingOverrides
    {
        /// <summary>
        /// Every override, in help and apply order. <paramref name="environment"/>: the launcher's environment
        /// (<see cref="Distributed.DistributedEnvironment.Current"/>), read only when the overrides apply.
        /// </summary>
        public static IReadOnlyList<TrainingOverride> All(TrainingPlan plan, Func<Distributed.DistributedEnvironment?> environment)
        {
            var all = new List<TrainingOverride>();
            all.AddRange(Schedule(plan));
            all.AddRange(Data(plan));
            all.AddRange(RunAndOutput(plan));
            all.AddRange(Parallel(plan, environment));
            all.Add(Precision(plan));
            all.Add(Recomputation(plan));
            return all;
        }

        /// <summary>The optimisation schedule: epochs, batch size, learning rate, seed, early stopping.</summary>
        public static IEnumerable<TrainingOverride> Schedule(TrainingPlan plan)
        {
            yield return TrainingOverride.Of(
                new Option<int>("--epochs") { Description = $"Passes over the training data (declared: {plan.Epochs})", DefaultValueFactory = _ => plan.Epochs },
                PlanRules.Epochs, (o, v) => o with { Plan = o.Plan with { Epochs = v } });
            yield return TrainingOverride.Of(
                new Option<int>("--batch-size") { Description = $"Samples per batch (declared: {plan.BatchSize})", DefaultValueFactory = _ => plan.BatchSize },
                PlanRules.BatchSize, (o, v) => o with { Plan = o.Plan with { BatchSize = v } });
            yield return TrainingOverride.Of(
                new Option<double>("--lr") { Description = $"Learning rate (declared: {plan.LearningRate})", DefaultValueFactory = _ => plan.LearningRate },
                PlanRules.LearningRate, (o, v) => o with { Plan = o.Plan with { LearningRate = v } });
            yield return TrainingOverride.Of(
                new Option<long>("--seed") { Description = $"Seed for initialisation, shuffling and dropout (declared: {plan.Seed})", DefaultValueFactory = _ => plan.Seed },
                (o, v) => o with { Plan = o.Plan with { Seed = v } });
            yield return TrainingOverride.Of(
                new Option<int>("--patience") { Description = $"Stop after this many epochs without a better validation loss; 0 is off (declared: {plan.EarlyStoppingPatience})", DefaultValueFactory = _ => plan.EarlyStoppingPatience },
                PlanRules.EarlyStoppingPatience, (o, n) =>
                {
                    if (n > 0 && o.Plan.ValidationFraction == 0)
                        throw new TrainingException($"--patience watches the validation loss, but {plan.ModelName}'s [Train] holds out no validation data (ValidationFraction = 0)");
                    return o with { Plan = o.Plan with { EarlyStoppingPatience = n } };
                });
            yield return TrainingOverride.Of(
                new Option<int>("--grad-accum") { Description = $"Gradient accumulation: micro-batches of --batch-size per optimiser step (declared: {plan.GradientAccumulation})", HelpName = "K", DefaultValueFactory = _ => plan.GradientAccumulation },
                PlanRules.GradientAccumulation, (o, k) => o with { Plan = o.Plan with { GradientAccumulation = k } });
        }

        /// <summary>The data: training and test files, and how their CSV is laid out.</summary>
        public static IEnumerable<TrainingOverride> Data(TrainingPlan plan)
        {
            yield return TrainingOverride.Of(
                new Option<string>("--data") { Description = "Training data file (CSV: features, then the label)" + Declared(plan.Data), DefaultValueFactory = _ => plan.Data },
                (o, path) =>
                {
                    if (string.IsNullOrEmpty(path))
                        throw new TrainingException(plan.Data.Length == 0 ? $"no training data: {plan.ModelName}'s [Train] declares no Data; pass --data FILE" : "--data needs a file name");
                    return o with { Plan = o.Plan with { Data = path } };
                });
            yield return TrainingOverride.Of(
                new Option<string>("--test-data") { Description = "Test data file, same format" + Declared(plan.TestData), DefaultValueFactory = _ => plan.TestData },
                (o, path) => o with { Plan = o.Plan with { TestData = path ?? "" } });
            var layout = new CsvLayoutOptions(plan);
            yield return new TrainingOverride(layout.Header, (o, parsed) => o with { Plan = layout.Apply(o.Plan, parsed) });
            yield return new TrainingOverride(layout.LabelColumn, (o, _) => o); // applied with --header
        }

        /// <summary>The run and its outputs: checkpoints, report, device, threads, progress, optimisation passes.</summary>
        public static IEnumerable<TrainingOverride> RunAndOutput(TrainingPlan plan)
        {
            yield return TrainingOverride.Of(
                new Option<string>("--checkpoint-dir") { Description = "Where checkpoints are written each epoch", DefaultValueFactory = _ => Path.Combine("checkpoints", plan.ModelName) },
                (o, v) => o with { CheckpointDirectory = v ?? "checkpoints" });
            yield return TrainingOverride.Of(
                new Option<bool>("--resume") { Description = "Continue from the checkpoint in --checkpoint-dir" },
                (o, v) => o with { Resume = v });
            yield return TrainingOverride.Of(
                new Option<string?>("--report") { Description = "Write a JSON report to PATH (and the training curves next to it as PNG)", HelpName = "PATH" },
                (o, v) => o with { ReportPath = v });
            var device = new Option<string>("--device") { Description = "cpu or cuda", DefaultValueFactory = _ => "cpu" };
            device.AcceptOnlyFromAmong("cpu", "cuda");
            yield return TrainingOverride.Of(device, (o, v) => o with { Device = v ?? "cpu" });
            yield return TrainingOverride.Of(
                new Option<int>("--threads") { Description = "libtorch threads (default: libtorch's choice)" },
                (o, t) => t < 0 ? throw new TrainingException($"--threads must be 0 or more, got {t}") : o with { Threads = t });
            yield return TrainingOverride.Of(
                new Option<bool>("--deterministic") { Description = "Turn dropout off and run libtorch on 1 thread (or --threads N) so CPU runs compare bit for bit" },
                (o, v) => o with { Deterministic = v });
            yield return TrainingOverride.Of(
                new Option<string?>("--tensorboard") { Description = "Write TensorBoard event files to DIR", HelpName = "DIR" },
                (o, v) => o with { TensorBoardDirectory = v });
            yield return TrainingOverride.Of(
                new Option<bool>("--plain") { Description = "One plain line per epoch instead of a live progress bar" },
                (o, v) => o with { PlainProgress = v });
            yield return TrainingOverride.Of(
                new Option<bool>("--no-optimize") { Description = "Skip the declared [Prune]/[Quantize] passes" + (plan.Passes.Count == 0 ? " (none declared)" : $" ({string.Join("; ", plan.Passes)})") },
                (o, v) => o with { NoOptimize = v });
            yield return TrainingOverride.Of(
                new Option<string?>("--export") { Description = "Where the optimised model goes (default: optimized.bin in --checkpoint-dir)", HelpName = "PATH" },
                (o, v) => o with { ExportPath = v });
        }

        /// <summary>
        /// Data-parallel training ([Parallel]): ranks, backend, mode and its async settings, the launcher's hostfile and
        /// restarts. Started by mpirun or srun, the launcher's world size wins over <c>--world-size</c>.
        /// </summary>
        public static IEnumerable<TrainingOverride> Parallel(TrainingPlan plan, Func<Distributed.DistributedEnvironment?> environment)
        {
            yield return TrainingOverride.Of(
                new Option<int>("--world-size") { Description = $"Ranks training together; above 1 the trainer starts them under mpirun (declared: {plan.WorldSize})", DefaultValueFactory = _ => plan.WorldSize },
                PlanRules.WorldSize, (o, v) => o with { Plan = o.Plan with { WorldSize = environment()?.WorldSize ?? v } });
            var backend = new Option<string>("--backend") { Description = $"Collective library: auto, mpi or nccl (declared: {plan.Backend.ToString().ToLowerInvariant()})", DefaultValueFactory = _ => plan.Backend.ToString().ToLowerInvariant() };
            backend.AcceptOnlyFromAmong("auto", "mpi", "nccl");
            yield return TrainingOverride.Of(backend, (o, v) =>
            {
                if (v == "nccl" && o.Device != "cuda")
                    throw new TrainingException("--backend nccl reduces CUDA tensors only: add --device cuda, or use --backend mpi (or auto) on the CPU");
                return o with { Plan = o.Plan with { Backend = Enum.Parse<CommBackend>(v ?? "auto", ignoreCase: true) } };
            });
            yield return TrainingOverride.Of(
                new Option<bool>("--sync-batchnorm") { Description = "Average BatchNorm batch statistics over all ranks" + (plan.SyncBatchNorm ? " (declared: on)" : "") },
                (o, v) => o with { Plan = o.Plan with { SyncBatchNorm = plan.SyncBatchNorm || v } });
            var mode = new Option<string>("--mode") { Description = $"sync (DDP: gradients averaged every step) or async (local SGD: parameters averaged every --sync-every steps) (declared: {plan.Mode.ToString().ToLowerInvariant()})", DefaultValueFactory = _ => plan.Mode.ToString().ToLowerInvariant() };
            mode.AcceptOnlyFromAmong("sync", "async");
            yield return TrainingOverride.Of(mode, (o, v) => o with { Plan = o.Plan with { Mode = Enum.Parse<ParallelMode>(v ?? "sync", ignoreCase: true) } });
            yield return TrainingOverride.Of(
                new Option<int?>("--sync-every") { Description = $"Async: local steps between averaging rounds (declared: {plan.SyncEvery})", HelpName = "K" },
                (o, v) =>
                {
                    AsyncOnly(o, "--sync-every", v is not null);
                    int k = v ?? plan.SyncEvery;
                    if (!PlanRules.SyncEvery.Holds(k)) throw new TrainingException(PlanRules.SyncEvery.Message("--sync-every", k));
                    return o with { Plan = o.Plan with { SyncEvery = k } };
                });
            var outer = new Option<string?>("--outer-optimizer") { Description = $"Async: none (model averaging) or nesterov (DiLoCo's outer step, lr {plan.OuterLearningRate}, momentum {plan.OuterMomentum}) (declared: {plan.OuterOptimizer.ToString().ToLowerInvariant()})", HelpName = "none|nesterov" };
            outer.AcceptOnlyFromAmong("none", "nesterov");
            yield return TrainingOverride.Of(outer, (o, v) =>
            {
                AsyncOnly(o, "--outer-optimizer", v is not null);
                return o with { Plan = o.Plan with { OuterOptimizer = v is null ? plan.OuterOptimizer : Enum.Parse<OuterOptimizer>(v, ignoreCase: true) } };
            });
            yield return TrainingOverride.Of(
                new Option<bool>("--no-overlap") { Description = "Async: average with a blocking all-reduce instead of overlapping it with the next local steps" },
                (o, v) =>
                {
                    AsyncOnly(o, "--no-overlap", v);
                    return o with { Plan = o.Plan with { OverlapAveraging = plan.OverlapAveraging && !v } };
                });
            yield return TrainingOverride.Of(
                new Option<string?>("--hostfile") { Description = "Open MPI hostfile for a run across machines (passed to mpirun)", HelpName = "FILE" },
                (o, v) => o with { Hostfile = v });
            // Elastic restarts: the launcher starts the ranks again with --resume; each rank learns the count from it.
            var maxRestarts = new Option<int>("--max-restarts") { Description = $"Restart every rank from the last checkpoint when a rank dies, up to N times (torchrun's --max-restarts; declared: {plan.MaxRestarts})", HelpName = "N", DefaultValueFactory = _ => plan.MaxRestarts };
            yield return new TrainingOverride(maxRestarts, (o, parsed) =>
            {
                int n = parsed.GetValue(maxRestarts);
                if (!PlanRules.MaxRestarts.Holds(n)) throw new TrainingException(PlanRules.MaxRestarts.Message("--max-restarts", n));
                if (n > 0 && environment() is null && o.Plan.WorldSize == 1 && parsed.GetResult(maxRestarts) is { Implicit: false })
                    throw new TrainingException("--max-restarts restarts the ranks the trainer starts under mpirun: add --world-size 2 or more (a single process continues with --resume)");
                return o with { Plan = o.Plan with { MaxRestarts = n } };
            });
            // ZeRO: what the ranks shard.
            var shard = new Option<string?>("--shard") { Description = $"Sync: what each rank shards instead of replicating (ZeRO stages 1-3): none, optimizer-state, gradients or parameters (declared: {MemoryPlan.ShardName(plan.Shard)})", HelpName = "none|optimizer-state|gradients|parameters" };
            shard.AcceptOnlyFromAmong("none", "optimizer-state", "gradients", "parameters");
            yield return TrainingOverride.Of(shard, (o, v) =>
            {
                // A declared level is sync's: --mode async trains replicas of its own, with nothing sharded.
                if (v is null) return o.Plan.Mode == ParallelMode.Async ? o with { Plan = o.Plan with { Shard = ShardLevel.None } } : o;
                if (v != "none" && o.Plan.Mode == ParallelMode.Async) throw new TrainingException($"--shard {v} applies to synchronous training (one model stepped together); add --mode sync");
                return o with { Plan = o.Plan with { Shard = v switch { "none" => ShardLevel.None, "gradients" => ShardLevel.Gradients, "parameters" => ShardLevel.Parameters, _ => ShardLevel.OptimizerState } } };
            });
        }

        /// <summary>
        /// The arithmetic of the steps, after the parallel settings (it looks at <c>--sync-batchnorm</c>): <c>fp32</c> or
        /// <c>bf16</c> (mixed precision; the runtime falls back to fp32 on a CPU without bfloat16 instructions).
        /// </summary>
        public static TrainingOverride Precision(TrainingPlan plan)
        {
            var precision = new Option<string>("--precision") { Description = $"Arithmetic of the training steps: fp32, or bf16 (bfloat16 matrix products, float32 master weights) (declared: {PrecisionName(plan.Precision)})", HelpName = "fp32|bf16", DefaultValueFactory = _ => PrecisionName(plan.Precision) };
            precision.AcceptOnlyFromAmong("fp32", "bf16");
            return TrainingOverride.Of(precision, (o, v) =>
            {
                var chosen = v == "bf16" ? ModelDsl.Precision.BFloat16 : ModelDsl.Precision.Float32;
                if (chosen == ModelDsl.Precision.BFloat16 && o.Plan.SyncBatchNorm && o.Plan.WorldSize > 1)
                    throw new TrainingException("--precision bf16 does not combine with --sync-batchnorm yet (the bfloat16 working copy's BatchNorm would keep per-rank statistics): drop one of them");
                return o with { Plan = o.Plan with { Precision = chosen } };
            });
        }

        /// <summary>Activation recomputation: <c>none</c>, or <c>blocks</c> (each block keeps only its input and runs again in backward).</summary>
        public static TrainingOverride Recomputation(TrainingPlan plan)
        {
            var recompute = new Option<string>("--recompute") { Description = $"Activation recomputation: none, or blocks (each Transformer or [Block] layer keeps only its input and runs its forward again in backward) (declared: {RecomputeName(plan.Recompute)})", HelpName = "none|blocks", DefaultValueFactory = _ => RecomputeName(plan.Recompute) };
            recompute.AcceptOnlyFromAmong("none", "blocks");
            return TrainingOverride.Of(recompute, (o, v) => o with { Plan = o.Plan with { Recompute = v == "blocks" ? Recompute.Blocks : Recompute.None } });
        }

        /// <summary>The <c>--recompute</c> spelling of a setting (<c>none</c>, <c>blocks</c>).</summary>
        internal static string RecomputeName(Recompute recompute) => recompute == Recompute.Blocks ? "blocks" : "none";

        /// <summary>The <c>--precision</c> spelling of a precision (<c>fp32</c>, <c>bf16</c>), as the report writes it.</summary>
        internal static string PrecisionName(ModelDsl.Precision precision) => precision == ModelDsl.Precision.BFloat16 ? "bf16" : "fp32";

        private static void AsyncOnly(TrainingOptions o, string option, bool given)
        {
            if (given && o.Plan.Mode == ParallelMode.Sync)
                throw new TrainingException($"{option} applies to asynchronous training (local SGD); add --mode async");
        }

        private static string Declared(string value) => value.Length == 0 ? "" : $" (declared: {value})";
    }
}
