using System;
using System.CommandLine;
using System.IO;
using ModelDsl.Runtime.Training;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>
    /// <c>consolidate [--checkpoint PATH] --output FILE [--world-size N]</c>: reads a sharded checkpoint (the index and
    /// every shard it names) and writes one ordinary whole checkpoint, which resumes at any shard level — and, with
    /// <c>--world-size</c>, at another world size (docs/distributed.md).
    /// </summary>
    internal static class ConsolidateCommand
    {
        public const string Name = "consolidate";

        public static Command Create<TModel>(TrainingPlan plan, Func<TModel> create) where TModel : nn.Module<Tensor, Tensor>
        {
            string defaultPath = Path.Combine("checkpoints", plan.ModelName, Checkpoint.FileName);
            var command = new ModelCommandBuilder(plan, Name, $"Write a sharded checkpoint of {plan.ModelName} (--shard runs) as one whole checkpoint");
            var checkpoint = command.Add(new Option<string?>("--checkpoint") { Description = $"The sharded checkpoint's index (default: {defaultPath})", HelpName = "PATH" });
            var output = command.Add(new Option<string>("--output") { Description = "The whole checkpoint to write (may be the index itself: the shards are then deleted)", HelpName = "FILE", Required = true });
            var worldSize = command.Add(new Option<int?>("--world-size")
            {
                Description = "The world size the checkpoint is to resume at (default: the one that wrote it); another changes the global batch",
                HelpName = "N",
            });
            return command.Build((parsed, _) =>
            {
                string path = parsed.GetValue(checkpoint) is { Length: > 0 } given ? given : defaultPath;
                string outputPath = parsed.GetValue(output)!;
                int? ranks = parsed.GetValue(worldSize);
                if (ranks is < 1) throw new TrainingException($"--world-size must be at least 1, got {ranks}");
                try
                {
                    if (!File.Exists(path)) throw new TrainingException($"there is no checkpoint at {path}" + (parsed.GetValue(checkpoint) is null ? " (pass --checkpoint PATH)" : ""));
                    if (!ShardedCheckpoint.IsSharded(path))
                    {
                        var whole = Checkpoint.ReadState(path); // verified: a whole checkpoint needs no consolidation
                        throw new TrainingException($"{path} is a whole checkpoint already (epoch {whole.Epoch}); consolidate reads the sharded checkpoints of --shard runs");
                    }
                    using var model = create();
                    string optimizerName = ShardedCheckpoint.OptimizerOf(path);
                    if (!Enum.TryParse<Optimizer>(optimizerName, out var kind))
                        throw new TrainingException($"{path} holds {optimizerName} optimiser state, which this runtime does not create");
                    using var optimizer = Trainer.CreateOptimizer(plan with { Optimizer = kind }, model);
                    var info = ShardedCheckpoint.Consolidate(path, outputPath, model, optimizer, plan.ModelName, ranks);
                    Console.WriteLine($"consolidated {plan.ModelName} from {path} ({info.Shards.Count} shards, shard level {info.Shard}, epoch {info.Epoch}, step {info.Step}) into {outputPath}" +
                        (ranks is { } n && n != info.PlanWorldSize ? $"; it resumes at world size {n} (written at {info.WorldSize})" : $"; it resumes at world size {info.PlanWorldSize?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?"}, at any shard level"));
                    return 0;
                }
                catch (CheckpointException e)
                {
                    throw new TrainingException(e.Message, inner: e);
                }
            });
        }
    }
}
