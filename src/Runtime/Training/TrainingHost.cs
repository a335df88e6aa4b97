using System;
using System.CommandLine;
using System.CommandLine.Help;
using System.IO;
using System.Linq;
using ModelDsl.Runtime.Inference;

namespace ModelDsl.Runtime.Training
{
    /// <summary>What one run was asked to do: the plan's values, with the command line's overrides applied.</summary>
    public sealed record TrainingOptions
    {
        /// <summary>The plan after overrides.</summary>
        public required TrainingPlan Plan { get; init; }
        /// <summary>Where checkpoints go.</summary>
        public required string CheckpointDirectory { get; init; }
        /// <summary>Continue from the checkpoint in <see cref="CheckpointDirectory"/>.</summary>
        public bool Resume { get; init; }
        /// <summary>Where to write the JSON report (and the training-curve PNG beside it), if anywhere.</summary>
        public string? ReportPath { get; init; }
        /// <summary><c>cpu</c> or <c>cuda</c>.</summary>
        public string Device { get; init; } = "cpu";
        /// <summary>libtorch intra-op threads; 0 keeps libtorch's default.</summary>
        public int Threads { get; init; }
        /// <summary>
        /// Dropout off and libtorch on one thread (unless <see cref="Threads"/> is set), so CPU runs compare bit for
        /// bit. Not deterministic kernels: TorchSharp has no <c>torch.use_deterministic_algorithms</c>.
        /// </summary>
        public bool Deterministic { get; init; }
        /// <summary>TensorBoard event-file directory, if any.</summary>
        public string? TensorBoardDirectory { get; init; }
        /// <summary>Never draw live progress (one plain line per epoch), even on a terminal.</summary>
        public bool PlainProgress { get; init; }
        /// <summary>Skip the declared optimisation passes ([Prune], [Quantize]).</summary>
        public bool NoOptimize { get; init; }
        /// <summary>Where the optimised model goes; default <c>optimized.bin</c> in <see cref="CheckpointDirectory"/>.</summary>
        public string? ExportPath { get; init; }
        /// <summary>Restarts of the job before this run (the launcher's <see cref="Distributed.MpiLauncher.RestartCountVariable"/>); the report's <c>restarts</c>.</summary>
        public int Restarts { get; init; }
        /// <summary>The Open MPI hostfile the launcher passes to <c>mpirun</c> (<c>--hostfile</c>), if any.</summary>
        public string? Hostfile { get; init; }
        /// <summary>The CPU whose instructions decide whether bfloat16 runs (<c>--precision bf16</c>); null: this machine's. Tests pass another.</summary>
        public MixedPrecision.CpuFeatures? Cpu { get; init; }
    }

    /// <summary>
    /// The command line of a generated trainer (<c>Model.Run(args)</c>): parses and validates the options,
    /// then trains. Bad arguments give one line on stderr and exit code 2, never a stack trace.
    /// </summary>
    public static class TrainingHost
    {
        /// <summary>Exit code for bad command-line arguments, data or checkpoints.</summary>
        public const int UsageError = 2;
        /// <summary>Exit code when training diverged (a NaN or infinite loss).</summary>
        public const int Diverged = 3;

        /// <summary>Parses <paramref name="args"/> and trains the model that <paramref name="create"/> builds.</summary>
        /// <param name="args">The command line.</param>
        /// <param name="plan">The declared plan.</param>
        /// <param name="create">Builds a freshly initialised model.</param>
        /// <param name="summary">The model's compile-time summary, printed before training.</param>
        public static int Run<TModel>(string[] args, TrainingPlan plan, Func<TModel> create, ModelSummary? summary = null)
            where TModel : TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>
        {
            // Started by mpirun or srun: train with the ranks given (read once the command line asks to train).
            var launcher = new Lazy<Distributed.DistributedEnvironment?>(() => Distributed.DistributedEnvironment.Current);
            var overrides = TrainingOverrides.All(plan, () => launcher.Value);
            var root = new RootCommand($"Train {plan.ModelName}: {plan.Loss} loss, {plan.Optimizer}, {plan.Epochs} epochs of batch {plan.BatchSize} (declared by [Train]).");
            foreach (var o in overrides) root.Options.Add(o.Option);

            // `train` is the default command: the same options work with or without the word. evaluate, predict and
            // export use a trained model (ModelDsl.Runtime.Inference); --version prints the version and exits.
            var train = new Command("train", $"Train {plan.ModelName} (the default command)");
            foreach (var option in root.Options.Where(o => o is not HelpOption and not VersionOption)) train.Options.Add(option);
            root.Subcommands.Add(train);
            ModelCommands.AddTo(root, plan, create);
            // Training runs below, not through an action; a command with subcommands and no action would be
            // "Required command was not provided".
            root.SetAction(_ => 0);
            train.SetAction(_ => 0);

            ParseResult parsed = root.Parse(args);
            if (parsed.Errors.Count > 0)
                return Usage(parsed.Errors[0].Message);
            if (parsed.Action is HelpAction || ModelCommands.Handles(parsed))
                return parsed.Invoke();

            var options = new TrainingOptions { Plan = plan, CheckpointDirectory = "checkpoints", Restarts = Distributed.MpiLauncher.RestartCount };
            try
            {
                foreach (var o in overrides) options = o.Apply(options, parsed);
            }
            catch (TrainingException bad)
            {
                return Usage(bad.Message);
            }
            int ranks = options.Plan.WorldSize;
            var environment = launcher.Value;

            // Started alone with a world size above 1 (and a command line that checks out, so a mistake is reported
            // once, not by every rank): start the ranks under mpirun, each with this process's own command line (not
            // just args: a program may choose the model from an argument before it calls Run).
            if (Distributed.MpiLauncher.ShouldRelaunch(ranks))
            {
                string[] commandLine = Environment.GetCommandLineArgs()[1..];
                return Distributed.MpiLauncher.Relaunch(commandLine, ranks, new Distributed.MpiLaunchOptions
                {
                    Hostfile = options.Hostfile,
                    MaxRestarts = options.Plan.MaxRestarts,
                    RestartArguments = commandLine.Contains("--resume") ? null : commandLine.Append("--resume").ToArray(),
                });
            }

            if (environment is null || ranks == 1)
                return Guarded(primary: true, () =>
                {
                    PrintSummary(summary, options.Plan);
                    return Trainer.Train(options, create);
                });
            return RunRank(options, create, summary);
        }

        /// <summary>
        /// One rank of a data-parallel job. A problem the user can act on (bad data, a checkpoint of another plan, a
        /// diverged loss, which the ranks decide together) is printed once, by rank 0, and ends the job with its exit
        /// code; anything else aborts the whole job at once with one line naming this rank.
        /// </summary>
        private static int RunRank<TModel>(TrainingOptions options, Func<TModel> create, ModelSummary? summary)
            where TModel : TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>
        {
            var device = options.Device == "cuda" ? TorchSharp.torch.CUDA : TorchSharp.torch.CPU;
            Distributed.ProcessGroup group;
            try
            {
                group = Distributed.ProcessGroup.Create(options.Plan.Backend, device);
            }
            catch (Exception e) when (e is Distributed.DistributedException or ArgumentException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return UsageError;
            }
            using (group)
            {
                bool primary = group.Rank == 0;
                // Ranks on one machine share its cores: unless --threads says otherwise, each takes its share, as
                // torchrun's OMP_NUM_THREADS does (oversubscribed libtorch thread pools would slow every rank down).
                if (options.Threads == 0)
                    options = options with { Threads = RankThreads(group.WorldSize, Environment.ProcessorCount, Environment.GetEnvironmentVariables()) };
                try
                {
                    using ITrainingStrategy strategy = options.Plan.Mode == ParallelMode.Async
                        ? new Distributed.LocalSgdStrategy(group, options.Plan)
                        : options.Plan.Shard != ShardLevel.None
                            ? new Distributed.ShardedDataParallelStrategy(group, options.Plan)
                            : new Distributed.DataParallelStrategy(group, options.Plan);
                    int code = Guarded(primary, () =>
                    {
                        if (primary) PrintSummary(summary, options.Plan);
                        return Trainer.Train(options, create, strategy);
                    }, rethrowUnexpected: true);
                    if (code != 0)
                    {
                        // Rank 0 has printed the error; end the job with its exit code and no further lines. The other
                        // ranks give rank 0 a moment to print and end the job first (an error only rank 0 meets,
                        // such as a failed checkpoint write, ends it all the same).
                        if (!primary) System.Threading.Thread.Sleep(TimeSpan.FromSeconds(2));
                        Distributed.Mpi.MpiRuntime.Abort(null, code);
                    }
                    return code;
                }
                catch (Exception e)
                {
                    group.Abort(e);
                    return 1;
                }
            }
        }

        /// <summary>
        /// The layer table, then the compiler's per-rank memory plan at this run's settings (world size, batch, optimiser;
        /// one row per shard level), which the report's <c>memory</c> section checks against what the run measures.
        /// </summary>
        private static void PrintSummary(ModelSummary? summary, TrainingPlan plan)
        {
            if (summary is not null) Console.WriteLine(summary);
            if (plan.Memory is not { } memory) return;
            var precision = MemoryProbe.RunPrecision(plan);
            int ranks = Math.Max(1, plan.WorldSize);
            var shard = plan.Mode == ParallelMode.Sync && ranks > 1 ? plan.Shard : ShardLevel.None;
            Console.WriteLine($"Memory per rank ({MemoryPlan.Describe(plan.Optimizer, plan.Momentum, precision, ranks, plan.BatchSize, plan.Recompute == Recompute.Blocks)}; this run: shard {MemoryPlan.ShardName(shard)}):");
            Console.WriteLine(MemoryPlan.Table(memory, plan.Optimizer, plan.Momentum, precision, ranks, plan.BatchSize, indent: "  ", recompute: plan.Recompute == Recompute.Blocks));
        }

        /// <summary>
        /// A rank's default libtorch thread count: the CPUs it sees (<paramref name="cpus"/>, .NET's
        /// <c>ProcessorCount</c>, which follows the affinity mask) when mpirun bound it to its own share
        /// (<c>OMPI_MCA_orte_bound_at_launch=1</c>, MpiLauncher's default on one machine), else its share of them among
        /// the ranks on this machine (<c>OMPI_COMM_WORLD_LOCAL_SIZE</c>, or the world size when that is not set).
        /// </summary>
        internal static int RankThreads(int worldSize, int cpus, System.Collections.IDictionary environment)
        {
            if (environment["OMPI_MCA_orte_bound_at_launch"] as string == "1") return Math.Max(1, cpus);
            int local = int.TryParse(environment["OMPI_COMM_WORLD_LOCAL_SIZE"] as string, out int n) && n > 0 ? n : worldSize;
            return Math.Max(1, cpus / local);
        }

        /// <summary>Runs <paramref name="train"/>; a problem the user can act on becomes one line (on rank 0) and its exit code.</summary>
        private static int Guarded(bool primary, Func<int> train, bool rethrowUnexpected = false)
        {
            void Say(string line)
            {
                if (primary) Console.Error.WriteLine(line);
            }
            try
            {
                return train();
            }
            catch (TrainingException ex)
            {
                Say("error: " + ex.Message);
                return ex.ExitCode;
            }
            catch (Exception ex) when (ex is CheckpointException or IOException or UnauthorizedAccessException)
            {
                Say("error: " + ex.Message);
                return UsageError;
            }
            catch (Exception ex) when (!rethrowUnexpected && Environment.GetEnvironmentVariable("MODELDSL_TRACE") != "1")
            {
                // A bug, not a usage problem: say so in one line; MODELDSL_TRACE=1 shows the stack trace.
                Console.Error.WriteLine($"error: unexpected {ex.GetType().Name}: {ex.Message} (set MODELDSL_TRACE=1 for details)");
                return 1;
            }
        }

        private static int Usage(string message)
        {
            Console.Error.WriteLine("error: " + message);
            Console.Error.WriteLine("Run with --help for the options.");
            return UsageError;
        }
    }

    /// <summary>A failure the user can act on (bad data, a corrupt checkpoint, divergence); printed as one line.</summary>
    public sealed class TrainingException : Exception
    {
        /// <summary>Creates the exception with the process exit code to use.</summary>
        public TrainingException(string message, int exitCode = TrainingHost.UsageError, Exception? inner = null) : base(message, inner)
        {
            ExitCode = exitCode;
        }

        /// <summary>The process exit code.</summary>
        public int ExitCode { get; }
    }
}
