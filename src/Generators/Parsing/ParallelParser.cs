using ModelDsl.Plans;
using static ModelDsl.Generators.Parsing.PlanArguments;

namespace ModelDsl.Generators.Parsing
{
    /// <summary>Reads and checks a [Parallel] attribute (MD02xx) against the model and its [Train].</summary>
    internal static class ParallelParser
    {
        internal const string ParallelAttributeName = "ModelDsl." + nameof(ParallelAttribute);

        private static readonly string[] AsyncOnly =
        {
            nameof(ParallelAttribute.SyncEvery), nameof(ParallelAttribute.WarmupSteps), nameof(ParallelAttribute.OuterOptimizer),
            nameof(ParallelAttribute.OuterLearningRate), nameof(ParallelAttribute.OuterMomentum), nameof(ParallelAttribute.Overlap),
        };

        /// <summary>
        /// Checks the declaration. <paramref name="hasTrain"/>: whether the class declares [Train];
        /// <paramref name="batchNormLayers"/>: the model's BatchNorm layer names (for MD0205).
        /// </summary>
        public static ParallelSpec? Parse(string modelName, AttributeData attribute, bool hasTrain, IReadOnlyList<string> batchNormLayers,
            Action<DiagnosticDescriptor, Location?, string[]> report)
        {
            var args = new PlanArguments(attribute, report);
            var reader = args.Reader;
            if (attribute.AttributeConstructor is null) return null; // the compiler reports the bad arguments
            if (!hasTrain)
            {
                report(DiagnosticDescriptors.ParallelWithoutTrain, reader.ArgumentLocation(null), new[] { modelName });
                return null;
            }

            ParallelMode? mode = args.Enum("mode", ParallelMode.Sync, DiagnosticDescriptors.SettingOfOtherMode);
            CommBackend? backend = args.Enum(nameof(ParallelAttribute.Backend), CommBackend.Auto, DiagnosticDescriptors.SettingOfOtherMode);
            OuterOptimizer? outer = args.Enum(nameof(ParallelAttribute.OuterOptimizer), OuterOptimizer.None, DiagnosticDescriptors.InvalidAsyncSetting);

            int worldSize = args.Get(nameof(ParallelAttribute.WorldSize), PlanDefaults.WorldSize);
            if (!PlanRules.WorldSize.Holds(worldSize)) args.Fail(DiagnosticDescriptors.InvalidWorldSize, nameof(ParallelAttribute.WorldSize), Int(worldSize));
            double bucket = args.Get(nameof(ParallelAttribute.BucketSizeMB), PlanDefaults.BucketSizeMB);
            if (!PlanRules.BucketSizeMB.Holds(bucket)) args.Fail(DiagnosticDescriptors.InvalidBucketSize, nameof(ParallelAttribute.BucketSizeMB), Num(bucket));
            bool syncBatchNorm = args.Get(nameof(ParallelAttribute.SyncBatchNorm), false);

            int syncEvery = args.Get(nameof(ParallelAttribute.SyncEvery), PlanDefaults.SyncEvery);
            int warmup = args.Get(nameof(ParallelAttribute.WarmupSteps), 0);
            double outerLr = args.Get(nameof(ParallelAttribute.OuterLearningRate), PlanDefaults.OuterLearningRate);
            double outerMomentum = args.Get(nameof(ParallelAttribute.OuterMomentum), PlanDefaults.OuterMomentum);
            if (mode == ParallelMode.Sync)
            {
                foreach (var name in AsyncOnly.Where(args.Has))
                    args.Fail(DiagnosticDescriptors.SettingOfOtherMode, name,
                        $"{name} applies to ParallelMode.Async (local SGD); ParallelMode.Sync averages gradients every step");
            }
            else if (mode == ParallelMode.Async)
            {
                if (!PlanRules.SyncEvery.Holds(syncEvery)) args.Fail(DiagnosticDescriptors.InvalidAsyncSetting, nameof(ParallelAttribute.SyncEvery), $"SyncEvery is {Int(syncEvery)}; ranks average their parameters every SyncEvery ≥ 1 local steps");
                if (!PlanRules.WarmupSteps.Holds(warmup)) args.Fail(DiagnosticDescriptors.InvalidAsyncSetting, nameof(ParallelAttribute.WarmupSteps), $"WarmupSteps is {Int(warmup)}; it must be 0 or more");
                bool nesterov = outer == OuterOptimizer.Nesterov;
                foreach (var name in new[] { nameof(ParallelAttribute.OuterLearningRate), nameof(ParallelAttribute.OuterMomentum) }.Where(n => args.Has(n) && !nesterov))
                    args.Fail(DiagnosticDescriptors.InvalidAsyncSetting, name, $"{name} applies only with OuterOptimizer = OuterOptimizer.Nesterov");
                if (nesterov && !PlanRules.OuterLearningRate.Holds(outerLr))
                    args.Fail(DiagnosticDescriptors.InvalidAsyncSetting, nameof(ParallelAttribute.OuterLearningRate), $"OuterLearningRate is {Num(outerLr)}; it must be positive");
                if (nesterov && !PlanRules.OuterMomentum.Holds(outerMomentum))
                    args.Fail(DiagnosticDescriptors.InvalidAsyncSetting, nameof(ParallelAttribute.OuterMomentum), $"OuterMomentum is {Num(outerMomentum)}; it must be in [0, 1)");
                if (worldSize == 1) report(DiagnosticDescriptors.AsyncAtWorldSizeOne, reader.ArgumentLocation(nameof(ParallelAttribute.WorldSize)) ?? reader.ArgumentLocation(null), Array.Empty<string>());
            }

            int maxRestarts = args.Get(nameof(ParallelAttribute.MaxRestarts), 0);
            if (!PlanRules.MaxRestarts.Holds(maxRestarts)) args.Fail(DiagnosticDescriptors.InvalidMaxRestarts, nameof(ParallelAttribute.MaxRestarts), Int(maxRestarts));
            else if (maxRestarts > 0 && worldSize == 1)
                report(DiagnosticDescriptors.RestartsAtWorldSizeOne, reader.ArgumentLocation(nameof(ParallelAttribute.MaxRestarts)), Array.Empty<string>());

            ShardLevel? shard = args.Enum(nameof(ParallelAttribute.Shard), ShardLevel.None, DiagnosticDescriptors.SettingOfOtherMode);
            if (shard is { } level && level != ShardLevel.None)
            {
                if (mode == ParallelMode.Async) args.Fail(DiagnosticDescriptors.ShardWithAsync, nameof(ParallelAttribute.Shard), level.ToString());
                else if (worldSize == 1) report(DiagnosticDescriptors.ShardAtWorldSizeOne, reader.ArgumentLocation(nameof(ParallelAttribute.Shard)), new[] { level.ToString() });
            }

            if (worldSize > 1 && !syncBatchNorm && batchNormLayers.Count > 0)
                report(DiagnosticDescriptors.BatchNormPerRank, reader.ArgumentLocation(null),
                    new[] { modelName, string.Join(", ", batchNormLayers), Int(worldSize) });

            if (!args.Ok || mode is not { } parallelMode || backend is null || outer is null || shard is null) return null;
            // The generated TrainingPlan's values, in the order it lists them: the mode, the world size (a plan without
            // [Parallel] trains on one rank, so it is always written) and what the model declares.
            var values = new List<PlanValue>
            {
                new(nameof(ParallelAttribute.Mode), parallelMode.ToString(), nameof(ParallelMode)),
                new(nameof(ParallelAttribute.WorldSize), worldSize),
            };
            args.AddIfWritten(values, nameof(ParallelAttribute.Backend), backend.Value.ToString(), nameof(CommBackend));
            args.AddIfWritten(values, nameof(ParallelAttribute.BucketSizeMB), bucket);
            args.AddIfWritten(values, nameof(ParallelAttribute.SyncBatchNorm), syncBatchNorm);
            if (parallelMode == ParallelMode.Async)
            {
                args.AddIfWritten(values, nameof(ParallelAttribute.SyncEvery), syncEvery);
                args.AddIfWritten(values, nameof(ParallelAttribute.WarmupSteps), warmup);
                args.AddIfWritten(values, nameof(ParallelAttribute.OuterOptimizer), outer.Value.ToString(), nameof(OuterOptimizer));
                args.AddIfWritten(values, nameof(ParallelAttribute.OuterLearningRate), outerLr);
                args.AddIfWritten(values, nameof(ParallelAttribute.OuterMomentum), outerMomentum);
                // The runtime names it for what overlaps: TrainingPlan.OverlapAveraging (--no-overlap).
                args.AddIfWritten(values, nameof(ParallelAttribute.Overlap), args.Get(nameof(ParallelAttribute.Overlap), PlanDefaults.Overlap), planName: "OverlapAveraging");
            }
            args.AddIfWritten(values, nameof(ParallelAttribute.Shard), shard.Value.ToString(), nameof(ShardLevel));
            if (args.Has(nameof(ParallelAttribute.MaxRestarts)))
                values.Add(new(nameof(ParallelAttribute.MaxRestarts), maxRestarts, Comment: "restarts of a failed job from its last checkpoint"));
            return new ParallelSpec(parallelMode, worldSize, values.ToEquatableArray());
        }
    }
}
