using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using Microsoft.CodeAnalysis;
using ModelDsl.Generators.Diagnostics;
using ModelDsl.Generators.Model;
using ModelDsl.Plans;
using static ModelDsl.Generators.Parsing.PlanArguments;

namespace ModelDsl.Generators.Parsing
{
    /// <summary>Reads and checks a [Parallel] attribute (MD02xx) against the model and its [Train].</summary>
    internal static class ParallelParser
    {
        internal const string ParallelAttributeName = "ModelDsl.ParallelAttribute";

        private static readonly string[] AsyncOnly = { "SyncEvery", "WarmupSteps", "OuterOptimizer", "OuterLearningRate", "OuterMomentum", "Overlap" };

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
            CommBackend? backend = args.Enum("Backend", CommBackend.Auto, DiagnosticDescriptors.SettingOfOtherMode);
            OuterOptimizer? outer = args.Enum("OuterOptimizer", OuterOptimizer.None, DiagnosticDescriptors.InvalidAsyncSetting);

            int worldSize = args.Get("WorldSize", 2);
            if (!PlanRules.WorldSize.Holds(worldSize)) args.Fail(DiagnosticDescriptors.InvalidWorldSize, "WorldSize", Int(worldSize));
            double bucket = args.Get("BucketSizeMB", 25.0);
            if (!PlanRules.BucketSizeMB.Holds(bucket)) args.Fail(DiagnosticDescriptors.InvalidBucketSize, "BucketSizeMB", Num(bucket));
            bool syncBatchNorm = args.Get("SyncBatchNorm", false);

            int syncEvery = args.Get("SyncEvery", 1);
            int warmup = args.Get("WarmupSteps", 0);
            double outerLr = args.Get("OuterLearningRate", 0.7);
            double outerMomentum = args.Get("OuterMomentum", 0.9);
            if (mode == ParallelMode.Sync)
            {
                foreach (var name in AsyncOnly.Where(args.Has))
                    args.Fail(DiagnosticDescriptors.SettingOfOtherMode, name,
                        $"{name} applies to ParallelMode.Async (local SGD); ParallelMode.Sync averages gradients every step");
            }
            else if (mode == ParallelMode.Async)
            {
                if (!PlanRules.SyncEvery.Holds(syncEvery)) args.Fail(DiagnosticDescriptors.InvalidAsyncSetting, "SyncEvery", $"SyncEvery is {Int(syncEvery)}; ranks average their parameters every SyncEvery ≥ 1 local steps");
                if (!PlanRules.WarmupSteps.Holds(warmup)) args.Fail(DiagnosticDescriptors.InvalidAsyncSetting, "WarmupSteps", $"WarmupSteps is {Int(warmup)}; it must be 0 or more");
                bool nesterov = outer == OuterOptimizer.Nesterov;
                foreach (var name in new[] { "OuterLearningRate", "OuterMomentum" }.Where(n => args.Has(n) && !nesterov))
                    args.Fail(DiagnosticDescriptors.InvalidAsyncSetting, name, $"{name} applies only with OuterOptimizer = OuterOptimizer.Nesterov");
                if (nesterov && !PlanRules.OuterLearningRate.Holds(outerLr))
                    args.Fail(DiagnosticDescriptors.InvalidAsyncSetting, "OuterLearningRate", $"OuterLearningRate is {Num(outerLr)}; it must be positive");
                if (nesterov && !PlanRules.OuterMomentum.Holds(outerMomentum))
                    args.Fail(DiagnosticDescriptors.InvalidAsyncSetting, "OuterMomentum", $"OuterMomentum is {Num(outerMomentum)}; it must be in [0, 1)");
                if (worldSize == 1) report(DiagnosticDescriptors.AsyncAtWorldSizeOne, reader.ArgumentLocation("WorldSize") ?? reader.ArgumentLocation(null), Array.Empty<string>());
            }

            int maxRestarts = args.Get("MaxRestarts", 0);
            if (!PlanRules.MaxRestarts.Holds(maxRestarts)) args.Fail(DiagnosticDescriptors.InvalidMaxRestarts, "MaxRestarts", Int(maxRestarts));
            else if (maxRestarts > 0 && worldSize == 1)
                report(DiagnosticDescriptors.RestartsAtWorldSizeOne, reader.ArgumentLocation("MaxRestarts"), Array.Empty<string>());

            if (worldSize > 1 && !syncBatchNorm && batchNormLayers.Count > 0)
                report(DiagnosticDescriptors.BatchNormPerRank, reader.ArgumentLocation(null),
                    new[] { modelName, string.Join(", ", batchNormLayers), Int(worldSize) });

            if (!args.Ok || mode is not { } parallelMode || backend is null || outer is null) return null;
            // The generated TrainingPlan's values, in the order it lists them.
            var values = new List<PlanValue>
            {
                new("Mode", parallelMode.ToString(), nameof(ParallelMode)),
                new("WorldSize", worldSize),
                new("Backend", backend.Value.ToString(), nameof(CommBackend)),
                new("BucketSizeMB", bucket),
                new("SyncBatchNorm", syncBatchNorm),
            };
            if (parallelMode == ParallelMode.Async)
            {
                values.Add(new("SyncEvery", syncEvery));
                values.Add(new("WarmupSteps", warmup));
                values.Add(new("OuterOptimizer", outer.Value.ToString(), nameof(OuterOptimizer)));
                values.Add(new("OuterLearningRate", outerLr));
                values.Add(new("OuterMomentum", outerMomentum));
                values.Add(new("OverlapAveraging", args.Get("Overlap", true)));
            }
            if (args.Has("MaxRestarts")) values.Add(new("MaxRestarts", maxRestarts, Comment: "restarts of a failed job from its last checkpoint"));
            return new ParallelSpec(parallelMode, worldSize, values.ToEquatableArray());
        }
    }
}
