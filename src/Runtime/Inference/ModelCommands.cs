using System;
using System.CommandLine;
using System.CommandLine.Invocation;
using System.IO;
using System.Linq;
using System.Reflection;
using ModelDsl.Runtime.Data;
using ModelDsl.Runtime.Training;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>
    /// The subcommands of a generated trainer that use a trained model — <c>evaluate</c>, <c>predict</c>,
    /// <c>export</c>, <c>consolidate</c> (sharded checkpoints), and <c>generate</c> for a language model — the learning-rate range test <c>lr-find</c>, and its <c>--version</c>. <see cref="TrainingHost"/> adds them beside <c>train</c>; each
    /// reports a problem as one line on stderr with exit code 2.
    /// </summary>
    internal static class ModelCommands
    {
        /// <summary>Adds evaluate, predict, export, consolidate (generate) and lr-find to <paramref name="root"/>, and makes its --version print <see cref="VersionText"/>.</summary>
        public static void AddTo<TModel>(RootCommand root, TrainingPlan plan, Func<TModel> create)
            where TModel : nn.Module<Tensor, Tensor>
        {
            root.Subcommands.Add(EvaluateCommand.Create(plan, create));
            root.Subcommands.Add(PredictCommand.Create(plan, create));
            root.Subcommands.Add(ExportCommand.Create(plan, create));
            root.Subcommands.Add(ConsolidateCommand.Create(plan, create));
            if (plan.IsLanguageModel) root.Subcommands.Add(GenerateCommand.Create(plan, create));
            root.Subcommands.Add(LrFindCommand.Create(plan, create));
            foreach (var version in root.Options.OfType<VersionOption>())
                version.Action = new PrintVersion(plan);
        }

        /// <summary>Whether the parsed command line asks for one of these commands (or --version) rather than training.</summary>
        public static bool Handles(ParseResult parsed) =>
            parsed.Action is PrintVersion || parsed.CommandResult.Command.Name is EvaluateCommand.Name or PredictCommand.Name or ExportCommand.Name or ConsolidateCommand.Name or GenerateCommand.Name or LrFindCommand.Name;

        /// <summary>The program's version line: the program, the model, and the ModelDsl and TorchSharp versions.</summary>
        public static string VersionText(TrainingPlan plan)
        {
            var entry = Assembly.GetEntryAssembly();
            string program = entry?.GetName().Name ?? plan.ModelName;
            return $"{program} {InformationalVersion(entry)} ({plan.ModelName}; ModelDsl {InformationalVersion(typeof(ModelCommands).Assembly)}, " +
                   $"TorchSharp {typeof(TorchSharp.torch).Assembly.GetName().Version?.ToString(3) ?? "?"})";
        }

        /// <summary>The --model option: a training checkpoint, an exported file or a PyTorch state dict.</summary>
        public static Option<string?> ModelOption(TrainingPlan plan) => new("--model")
        {
            Description = $"Model file: a training checkpoint, a PyTorch state dict, safetensors or the optimised model (optimized.bin) (default: {DefaultModelPath(plan, Checkpoint.BestFileName)}, else {DefaultModelPath(plan, Checkpoint.FileName)})",
            HelpName = "PATH",
        };

        /// <summary>The model file to use: the option's value, or the default training run's best checkpoint, or its last one.</summary>
        public static string ResolveModel(string? option, TrainingPlan plan)
        {
            if (option is { Length: > 0 }) return option;
            string best = DefaultModelPath(plan, Checkpoint.BestFileName);
            if (File.Exists(best)) return best;
            string last = DefaultModelPath(plan, Checkpoint.FileName);
            if (File.Exists(last)) return last;
            throw new TrainingException($"no model file: pass --model PATH (there is neither {best} nor {last})");
        }

        /// <summary>evaluate and predict read CSV rows; a language model's data is text, which they do not read yet.</summary>
        public static void RejectLanguageModel(TrainingPlan plan, string command)
        {
            if (plan.IsLanguageModel)
                throw new TrainingException($"{command} reads CSV rows, and {plan.ModelName} is a language model trained on text: its validation loss is " +
                                            "the training report's val_loss (--report PATH); sample from it with generate");
        }

        /// <summary>Runs <paramref name="body"/>; a problem the user can fix is one line on stderr and exit code 2.</summary>
        public static int Guard(Func<int> body)
        {
            try
            {
                return body();
            }
            catch (Exception e) when (e is ModelFileException or TrainingException or DataFormatException or FileNotFoundException or ArgumentException or IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine("error: " + e.Message);
                return e is TrainingException t ? t.ExitCode : TrainingHost.UsageError;
            }
            catch (Exception e) when (Environment.GetEnvironmentVariable("MODELDSL_TRACE") != "1")
            {
                Console.Error.WriteLine($"error: unexpected {e.GetType().Name}: {e.Message} (set MODELDSL_TRACE=1 for details)");
                return 1;
            }
        }

        private static string DefaultModelPath(TrainingPlan plan, string file) => Path.Combine("checkpoints", plan.ModelName, file);

        private static string InformationalVersion(Assembly? assembly)
        {
            string? version = assembly?.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
            if (version is null) return assembly?.GetName().Version?.ToString(3) ?? "?";
            int plus = version.IndexOf('+');
            return plus > 0 ? version.Substring(0, plus) : version;
        }

        private sealed class PrintVersion(TrainingPlan plan) : SynchronousCommandLineAction
        {
            public override int Invoke(ParseResult parseResult)
            {
                Console.WriteLine(VersionText(plan));
                return 0;
            }
        }
    }
}
