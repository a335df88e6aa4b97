using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using Microsoft.CodeAnalysis;
using ModelDsl.Generators.Diagnostics;
using ModelDsl.Generators.Model;

namespace ModelDsl.Generators.Parsing
{
    /// <summary>Reads and checks a [Parallel] attribute (MD02xx) against the model and its [Train].</summary>
    internal static class ParallelParser
    {
        internal const string ParallelAttributeName = "ModelDsl.ParallelAttribute";

        // ModelDsl.ParallelMode / CommBackend / OuterOptimizer by value (the generator cannot load the DSL assembly).
        private static readonly string[] Modes = { "Sync", "Async" };
        private static readonly string[] Backends = { "Auto", "Mpi", "Nccl" };
        private static readonly string[] OuterOptimizers = { "None", "Nesterov" };
        private static readonly string[] AsyncOnly = { "SyncEvery", "WarmupSteps", "OuterOptimizer", "OuterLearningRate", "OuterMomentum" };

        /// <summary>
        /// Checks the declaration. <paramref name="hasTrain"/>: whether the class declares [Train];
        /// <paramref name="batchNormLayers"/>: the model's BatchNorm layer names (for MD0205).
        /// </summary>
        public static ParallelSpec? Parse(string modelName, AttributeData attribute, bool hasTrain, IReadOnlyList<string> batchNormLayers,
            Action<DiagnosticDescriptor, Location?, string[]> report)
        {
            var reader = LayerAttributeReader.For(attribute);
            if (attribute.AttributeConstructor is null) return null; // the compiler reports the bad arguments
            if (!hasTrain)
            {
                report(DiagnosticDescriptors.ParallelWithoutTrain, reader.ArgumentLocation(null), new[] { modelName });
                return null;
            }

            var values = LayerAttributeReader.Arguments(attribute);

            T Get<T>(string name, T fallback) => values.TryGetValue(name, out var c) && c.Value is T v ? v : fallback;
            string Num(double d) => d.ToString("R", CultureInfo.InvariantCulture);
            string Int(int i) => i.ToString(CultureInfo.InvariantCulture);
            bool ok = true;
            void Fail(DiagnosticDescriptor d, string argument, params string[] args)
            {
                report(d, reader.ArgumentLocation(argument), args);
                ok = false;
            }

            string? mode = Name(Modes, Get("mode", 0));
            string? backend = Name(Backends, Get("Backend", 0));
            string? outer = Name(OuterOptimizers, Get("OuterOptimizer", 0));
            if (mode is null) Fail(DiagnosticDescriptors.SettingOfOtherMode, "mode", $"(ParallelMode){Get("mode", 0)} is not a ParallelMode");
            if (backend is null) Fail(DiagnosticDescriptors.SettingOfOtherMode, "Backend", $"(CommBackend){Get("Backend", 0)} is not a CommBackend");
            if (outer is null) Fail(DiagnosticDescriptors.InvalidAsyncSetting, "OuterOptimizer", $"(OuterOptimizer){Get("OuterOptimizer", 0)} is not an OuterOptimizer");

            int worldSize = Get("WorldSize", 2);
            if (worldSize < 1) Fail(DiagnosticDescriptors.InvalidWorldSize, "WorldSize", Int(worldSize));
            double bucket = Get("BucketSizeMB", 25.0);
            if (!(bucket > 0) || double.IsInfinity(bucket)) Fail(DiagnosticDescriptors.InvalidBucketSize, "BucketSizeMB", Num(bucket));
            bool syncBatchNorm = Get("SyncBatchNorm", false);

            int syncEvery = Get("SyncEvery", 1);
            int warmup = Get("WarmupSteps", 0);
            double outerLr = Get("OuterLearningRate", 0.7);
            double outerMomentum = Get("OuterMomentum", 0.9);
            if (mode == "Sync")
            {
                foreach (var name in AsyncOnly.Where(values.ContainsKey))
                    Fail(DiagnosticDescriptors.SettingOfOtherMode, name,
                        $"{name} applies to ParallelMode.Async (local SGD); ParallelMode.Sync averages gradients every step");
            }
            else if (mode == "Async")
            {
                if (syncEvery < 1) Fail(DiagnosticDescriptors.InvalidAsyncSetting, "SyncEvery", $"SyncEvery is {Int(syncEvery)}; ranks average their parameters every SyncEvery ≥ 1 local steps");
                if (warmup < 0) Fail(DiagnosticDescriptors.InvalidAsyncSetting, "WarmupSteps", $"WarmupSteps is {Int(warmup)}; it must be 0 or more");
                bool nesterov = outer == "Nesterov";
                foreach (var name in new[] { "OuterLearningRate", "OuterMomentum" }.Where(n => values.ContainsKey(n) && !nesterov))
                    Fail(DiagnosticDescriptors.InvalidAsyncSetting, name, $"{name} applies only with OuterOptimizer = OuterOptimizer.Nesterov");
                if (nesterov && (!(outerLr > 0) || double.IsInfinity(outerLr)))
                    Fail(DiagnosticDescriptors.InvalidAsyncSetting, "OuterLearningRate", $"OuterLearningRate is {Num(outerLr)}; it must be positive");
                if (nesterov && !(outerMomentum >= 0 && outerMomentum < 1))
                    Fail(DiagnosticDescriptors.InvalidAsyncSetting, "OuterMomentum", $"OuterMomentum is {Num(outerMomentum)}; it must be in [0, 1)");
                if (worldSize == 1) report(DiagnosticDescriptors.AsyncAtWorldSizeOne, reader.ArgumentLocation("WorldSize") ?? reader.ArgumentLocation(null), Array.Empty<string>());
            }

            if (worldSize > 1 && !syncBatchNorm && batchNormLayers.Count > 0)
                report(DiagnosticDescriptors.BatchNormPerRank, reader.ArgumentLocation(null),
                    new[] { modelName, string.Join(", ", batchNormLayers), Int(worldSize) });

            return ok && mode is not null && backend is not null && outer is not null
                ? new ParallelSpec(mode, worldSize, backend, bucket, syncBatchNorm, syncEvery, warmup, outer, outerLr, outerMomentum)
                : null;
        }

        private static string? Name(string[] names, int value) => value >= 0 && value < names.Length ? names[value] : null;
    }
}
