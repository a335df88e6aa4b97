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
            var epochs = new Option<int>("--epochs") { Description = $"Passes over the training data (declared: {plan.Epochs})", DefaultValueFactory = _ => plan.Epochs };
            var batch = new Option<int>("--batch-size") { Description = $"Samples per batch (declared: {plan.BatchSize})", DefaultValueFactory = _ => plan.BatchSize };
            var lr = new Option<double>("--lr") { Description = $"Learning rate (declared: {plan.LearningRate})", DefaultValueFactory = _ => plan.LearningRate };
            var seed = new Option<long>("--seed") { Description = $"Seed for initialisation, shuffling and dropout (declared: {plan.Seed})", DefaultValueFactory = _ => plan.Seed };
            var data = new Option<string>("--data") { Description = "Training data file (CSV: features, then the label)" + Declared(plan.Data), DefaultValueFactory = _ => plan.Data };
            var testData = new Option<string>("--test-data") { Description = "Test data file, same format" + Declared(plan.TestData), DefaultValueFactory = _ => plan.TestData };
            var checkpointDir = new Option<string>("--checkpoint-dir") { Description = "Where checkpoints are written each epoch", DefaultValueFactory = _ => Path.Combine("checkpoints", plan.ModelName) };
            var resume = new Option<bool>("--resume") { Description = "Continue from the checkpoint in --checkpoint-dir" };
            var report = new Option<string?>("--report") { Description = "Write a JSON report to PATH (and the training curves next to it as PNG)", HelpName = "PATH" };
            var device = new Option<string>("--device") { Description = "cpu or cuda", DefaultValueFactory = _ => "cpu" };
            device.AcceptOnlyFromAmong("cpu", "cuda");
            var threads = new Option<int>("--threads") { Description = "libtorch threads (default: libtorch's choice)" };
            var deterministic = new Option<bool>("--deterministic") { Description = "Turn dropout off and run libtorch on 1 thread (or --threads N) so CPU runs compare bit for bit" };
            var tensorboard = new Option<string?>("--tensorboard") { Description = "Write TensorBoard event files to DIR", HelpName = "DIR" };
            var plain = new Option<bool>("--plain") { Description = "One plain line per epoch instead of a live progress bar" };
            var worldSize = new Option<int>("--world-size") { Description = $"Ranks training together; above 1 the trainer starts them under mpirun (declared: {plan.WorldSize})", DefaultValueFactory = _ => plan.WorldSize };
            var backend = new Option<string>("--backend") { Description = $"Collective library: auto, mpi or nccl (declared: {plan.Backend.ToString().ToLowerInvariant()})", DefaultValueFactory = _ => plan.Backend.ToString().ToLowerInvariant() };
            backend.AcceptOnlyFromAmong("auto", "mpi", "nccl");
            var syncBatchNorm = new Option<bool>("--sync-batchnorm") { Description = "Average BatchNorm batch statistics over all ranks" + (plan.SyncBatchNorm ? " (declared: on)" : "") };
            var mode = new Option<string>("--mode") { Description = $"sync (DDP: gradients averaged every step) or async (local SGD: parameters averaged every --sync-every steps) (declared: {plan.Mode.ToString().ToLowerInvariant()})", DefaultValueFactory = _ => plan.Mode.ToString().ToLowerInvariant() };
            mode.AcceptOnlyFromAmong("sync", "async");
            var syncEvery = new Option<int?>("--sync-every") { Description = $"Async: local steps between averaging rounds (declared: {plan.SyncEvery})", HelpName = "K" };
            var outerOptimizer = new Option<string?>("--outer-optimizer") { Description = $"Async: none (model averaging) or nesterov (DiLoCo's outer step, lr {plan.OuterLearningRate}, momentum {plan.OuterMomentum}) (declared: {plan.OuterOptimizer.ToString().ToLowerInvariant()})", HelpName = "none|nesterov" };
            outerOptimizer.AcceptOnlyFromAmong("none", "nesterov");
            var noOverlap = new Option<bool>("--no-overlap") { Description = "Async: average with a blocking all-reduce instead of overlapping it with the next local steps" };
            var hostfile = new Option<string?>("--hostfile") { Description = "Open MPI hostfile for a run across machines (passed to mpirun)", HelpName = "FILE" };
            var noOptimize = new Option<bool>("--no-optimize") { Description = "Skip the declared [Prune]/[Quantize] passes" + (plan.Passes.Count == 0 ? " (none declared)" : $" ({string.Join("; ", plan.Passes)})") };
            var export = new Option<string?>("--export") { Description = "Where the optimised model goes (default: optimized.bin in --checkpoint-dir)", HelpName = "PATH" };

            var root = new RootCommand($"Train {plan.ModelName}: {plan.Loss} loss, {plan.Optimizer}, {plan.Epochs} epochs of batch {plan.BatchSize} (declared by [Train]).")
            {
                epochs, batch, lr, seed, data, testData, checkpointDir, resume, report, device, threads, deterministic, tensorboard, plain,
                worldSize, backend, syncBatchNorm, mode, syncEvery, outerOptimizer, noOverlap, hostfile,
                noOptimize, export,
            };

            var patience = new Option<int>("--patience") { Description = $"Stop after this many epochs without a better validation loss; 0 is off (declared: {plan.EarlyStoppingPatience})", DefaultValueFactory = _ => plan.EarlyStoppingPatience };
            root.Options.Add(patience);
            var maxRestarts = new Option<int>("--max-restarts") { Description = $"Restart every rank from the last checkpoint when a rank dies, up to N times (torchrun's --max-restarts; declared: {plan.MaxRestarts})", HelpName = "N", DefaultValueFactory = _ => plan.MaxRestarts };
            root.Options.Add(maxRestarts);
            var csvLayout = new CsvLayoutOptions(plan);
            csvLayout.AddTo(root);

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

            int e = parsed.GetValue(epochs), b = parsed.GetValue(batch), t = parsed.GetValue(threads);
            double rate = parsed.GetValue(lr);
            if (e < 1) return Usage($"--epochs must be at least 1, got {e}");
            if (b < 1) return Usage($"--batch-size must be at least 1, got {b}");
            if (!(rate > 0) || double.IsInfinity(rate)) return Usage($"--lr must be a positive number, got {rate}");
            if (t < 0) return Usage($"--threads must be 0 or more, got {t}");
            int ranks = parsed.GetValue(worldSize);
            if (ranks < 1) return Usage($"--world-size must be at least 1, got {ranks}");
            // Started by mpirun or srun: train with the ranks given.
            var environment = Distributed.DistributedEnvironment.Current;
            if (environment is not null) ranks = environment.WorldSize;
            if (parsed.GetValue(backend) == "nccl" && parsed.GetValue(device) != "cuda")
                return Usage("--backend nccl reduces CUDA tensors only: add --device cuda, or use --backend mpi (or auto) on the CPU");
            bool syncBn = plan.SyncBatchNorm || parsed.GetValue(syncBatchNorm);
            var parallelMode = Enum.Parse<ParallelMode>(parsed.GetValue(mode) ?? "sync", ignoreCase: true);
            int k = parsed.GetValue(syncEvery) ?? plan.SyncEvery;
            string? outer = parsed.GetValue(outerOptimizer);
            if (parallelMode == ParallelMode.Sync)
            {
                string? asyncOnly = parsed.GetValue(syncEvery) is not null ? "--sync-every" : outer is not null ? "--outer-optimizer" : parsed.GetValue(noOverlap) ? "--no-overlap" : null;
                if (asyncOnly is not null)
                    return Usage($"{asyncOnly} applies to asynchronous training (local SGD); add --mode async");
            }
            if (k < 1) return Usage($"--sync-every must be at least 1 (local steps between averaging rounds), got {k}");

            string dataPath = parsed.GetValue(data) ?? "";
            if (dataPath.Length == 0)
                return Usage(plan.Data.Length == 0 ? $"no training data: {plan.ModelName}'s [Train] declares no Data; pass --data FILE" : "--data needs a file name");

            var options = new TrainingOptions
            {
                Plan = plan with
                {
                    Epochs = e, BatchSize = b, LearningRate = rate, Seed = parsed.GetValue(seed), Data = dataPath, TestData = parsed.GetValue(testData) ?? "",
                    WorldSize = ranks, Backend = Enum.Parse<CommBackend>(parsed.GetValue(backend) ?? "auto", ignoreCase: true), SyncBatchNorm = syncBn,
                    Mode = parallelMode, SyncEvery = k,
                    OuterOptimizer = outer is null ? plan.OuterOptimizer : Enum.Parse<OuterOptimizer>(outer, ignoreCase: true),
                    OverlapAveraging = plan.OverlapAveraging && !parsed.GetValue(noOverlap),
                },
                CheckpointDirectory = parsed.GetValue(checkpointDir) ?? "checkpoints",
                Resume = parsed.GetValue(resume),
                ReportPath = parsed.GetValue(report),
                Device = parsed.GetValue(device) ?? "cpu",
                Threads = t,
                Deterministic = parsed.GetValue(deterministic),
                TensorBoardDirectory = parsed.GetValue(tensorboard),
                PlainProgress = parsed.GetValue(plain),
                NoOptimize = parsed.GetValue(noOptimize),
                ExportPath = parsed.GetValue(export),
            };

            int n = parsed.GetValue(patience);
            if (n < 0) return Usage($"--patience must be 0 (off) or a number of epochs, got {n}");
            if (n > 0 && plan.ValidationFraction == 0) return Usage($"--patience watches the validation loss, but {plan.ModelName}'s [Train] holds out no validation data (ValidationFraction = 0)");
            options = options with { Plan = options.Plan with { EarlyStoppingPatience = n } };
            try
            {
                options = options with { Plan = csvLayout.Apply(options.Plan, parsed) };
            }
            catch (TrainingException layout)
            {
                return Usage(layout.Message);
            }

            // Elastic restarts: the launcher starts the ranks again with --resume; each rank learns the count from it.
            int restartLimit = parsed.GetValue(maxRestarts);
            if (restartLimit < 0) return Usage($"--max-restarts must be 0 or more, got {restartLimit}");
            if (restartLimit > 0 && environment is null && ranks == 1 && parsed.GetResult(maxRestarts) is { Implicit: false })
                return Usage("--max-restarts restarts the ranks the trainer starts under mpirun: add --world-size 2 or more (a single process continues with --resume)");
            options = options with { Plan = options.Plan with { MaxRestarts = restartLimit }, Restarts = Distributed.MpiLauncher.RestartCount };

            // Started alone with a world size above 1 (and a command line that checks out, so a mistake is reported
            // once, not by every rank): start the ranks under mpirun, each with this process's own command line (not
            // just args: a program may choose the model from an argument before it calls Run).
            if (Distributed.MpiLauncher.ShouldRelaunch(ranks))
            {
                string[] commandLine = Environment.GetCommandLineArgs()[1..];
                return Distributed.MpiLauncher.Relaunch(commandLine, ranks, new Distributed.MpiLaunchOptions
                {
                    Hostfile = parsed.GetValue(hostfile),
                    MaxRestarts = restartLimit,
                    RestartArguments = commandLine.Contains("--resume") ? null : commandLine.Append("--resume").ToArray(),
                });
            }

            if (environment is null || ranks == 1)
                return Guarded(primary: true, () =>
                {
                    if (summary is not null) Console.WriteLine(summary);
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
                    options = options with { Threads = Math.Max(1, Environment.ProcessorCount / LocalRanks(group.WorldSize)) };
                try
                {
                    using ITrainingStrategy strategy = options.Plan.Mode == ParallelMode.Async
                        ? new Distributed.LocalSgdStrategy(group, options.Plan)
                        : new Distributed.DataParallelStrategy(group, options.Plan);
                    int code = Guarded(primary, () =>
                    {
                        if (summary is not null && primary) Console.WriteLine(summary);
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

        private static int LocalRanks(int worldSize) =>
            int.TryParse(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_LOCAL_SIZE"), out int local) && local > 0 ? local : worldSize;

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

        private static string Declared(string value) => value.Length == 0 ? "" : $" (declared: {value})";

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
