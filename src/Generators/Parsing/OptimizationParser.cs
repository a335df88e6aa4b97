using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using Microsoft.CodeAnalysis;
using ModelDsl.Generators.Dsl;
using ModelDsl.Generators.Diagnostics;
using ModelDsl.Generators.Model;
using static ModelDsl.Generators.Parsing.PlanArguments;
using ModelDsl.Shapes;

namespace ModelDsl.Generators.Parsing
{
    /// <summary>
    /// Reads and checks the optimisation plan — the [Prune] and [Quantize] attributes in declaration order (MD03xx) —
    /// against the model's layers, whose weight counts and shapes the compiler already knows.
    /// </summary>
    internal static class OptimizationParser
    {
        internal const string PruneAttributeName = "ModelDsl." + nameof(PruneAttribute);
        internal const string QuantizeAttributeName = "ModelDsl." + nameof(QuantizeAttribute);

        /// <summary>Layers a structured cut passes through unchanged on its way to the consumer.</summary>
        private static readonly LayerKind[] PassThrough =
        {
            LayerKind.ReLU, LayerKind.GELU, LayerKind.SiLU, LayerKind.Tanh, LayerKind.Sigmoid, LayerKind.Dropout, LayerKind.Identity,
            LayerKind.MaxPool2d, LayerKind.AvgPool2d, LayerKind.AdaptiveAvgPool2d,
        };

        /// <summary>
        /// Checks the passes. Returns them in declaration order (null when any is invalid) and the parameter count the
        /// model has after them (structured pruning removes parameters; the other passes keep the count).
        /// </summary>
        public static (EquatableArray<PassSpec> Passes, long ParametersAfter)? Parse(
            IReadOnlyList<AttributeData> attributes, IReadOnlyList<LayerSpec> layers, bool userForward, bool hasTrain,
            Action<DiagnosticDescriptor, Location?, string[]> report)
        {
            var passes = new List<PassSpec>();
            bool ok = true;
            bool quantized = false;
            var current = layers.ToDictionary(l => l.MemberName, l => l, StringComparer.Ordinal);
            var outs = layers.ToDictionary(l => l.MemberName, l => OutSize(l), StringComparer.Ordinal);

            foreach (var attribute in attributes)
            {
                var args = new PlanArguments(attribute, report, failed: () => ok = false);
                var reader = args.Reader;
                if (attribute.AttributeConstructor is null) { ok = false; continue; } // the compiler reports it
                if (!hasTrain)
                {
                    args.Fail(DiagnosticDescriptors.PassWithoutTrain, null, attribute.AttributeClass?.Name.Replace("Attribute", "") ?? "Prune");
                    continue;
                }

                string name = attribute.AttributeClass?.ToDisplayString() ?? "";
                var values = LayerAttributeReader.Arguments(attribute);

                if (name == QuantizeAttributeName)
                {
                    string? mode = args.Enum("mode", nameof(QuantizeMode.DynamicInt8), DiagnosticDescriptors.InvalidPassSetting);
                    if (mode is null) continue;
                    if (!layers.Any(l => l.Kind is LayerKind.Linear or LayerKind.TransformerBlock or LayerKind.LSTM or LayerKind.GRU))
                        report(DiagnosticDescriptors.NothingToQuantize, reader.ArgumentLocation(null), new[] { mode });
                    // The pass swaps each Linear through ReplaceLayer, which a layer declared as a field cannot take.
                    foreach (var field in layers.Where(l => l.Kind == LayerKind.Linear && l.IsField))
                        args.Fail(DiagnosticDescriptors.PassReplacesField, null, "[Quantize] replaces every Linear layer with an int8 one", field.MemberName, field.KindName);
                    quantized = true;
                    passes.Add(new PassSpec("Quantize", mode, 0, false, EquatableArray<string>.Empty, 2, -1, 0));
                    continue;
                }

                // [Prune]
                if (quantized)
                {
                    args.Fail(DiagnosticDescriptors.PruneAfterQuantize, null);
                    continue;
                }
                string? method = args.Enum("method", nameof(PruneMethod.L1Unstructured), DiagnosticDescriptors.InvalidPassSetting);
                bool isCount = attribute.AttributeConstructor.Parameters.Length > 1 && attribute.AttributeConstructor.Parameters[1].Type.SpecialType == SpecialType.System_Int32;
                string amountArgument = isCount ? "count" : "amount";
                double amount = isCount ? args.Get(amountArgument, 0) : args.Get(amountArgument, 0.0);
                double n = args.Get(nameof(PruneAttribute.N), PlanDefaults.N);
                int dim = args.Get(nameof(PruneAttribute.Dim), PlanDefaults.Dim);
                int fineTune = args.Get(nameof(PruneAttribute.FineTuneEpochs), 0);
                var targets = values.TryGetValue(nameof(PruneAttribute.Targets), out var t) && t.Kind == TypedConstantKind.Array && !t.IsNull
                    ? t.Values.Select(v => v.Value as string ?? "").ToArray()
                    : Array.Empty<string>();

                if (method is null) continue;
                if (fineTune < 0) args.Fail(DiagnosticDescriptors.InvalidPassSetting, nameof(PruneAttribute.FineTuneEpochs), $"FineTuneEpochs is {fineTune}; it must be 0 or more");
                if (!(n > 0)) args.Fail(DiagnosticDescriptors.InvalidPassSetting, nameof(PruneAttribute.N), $"N is {Num(n)}; the norm's order must be positive (1, 2, or double.PositiveInfinity)");
                if (targets.Length == 0)
                {
                    args.Fail(DiagnosticDescriptors.PruneWithoutTargets, nameof(PruneAttribute.Targets), method);
                    continue;
                }

                bool amountOk = true;
                if (isCount ? amount < 0 : !(amount >= 0 && amount <= 1))
                {
                    // The IDE fix clamps to the nearest bound: 0 for a negative amount, 1.0 for a fraction above 1.
                    args.Fail(DiagnosticDescriptors.AmountOutOfRange, amountArgument, FixValue.Append(new[] { isCount
                        ? $"the count {Num(amount)} is negative"
                        : $"the fraction {Num(amount)} is outside [0, 1] (an int gives a count)" },
                        isCount ? "0" : amount > 1 ? "1.0" : "0.0"));
                    amountOk = false;
                }

                bool structuredMethod = method is "LnStructured" or "RandomStructured" or "Structured";
                long globalWeights = 0;
                foreach (var target in targets)
                {
                    if (!current.TryGetValue(target, out var layer))
                    {
                        args.Fail(DiagnosticDescriptors.PruneTargetInvalid, "Targets", target, $"is not a layer of the model (its layers: {string.Join(", ", layers.Select(l => l.MemberName))})");
                        continue;
                    }
                    if (layer.Kind is LayerKind.LSTM or LayerKind.GRU)
                    {
                        args.Fail(DiagnosticDescriptors.PruneRecurrentLayer, "Targets", target, layer.KindName, method);
                        continue;
                    }
                    int rank = WeightRank(layer.Kind);
                    if (rank == 0)
                    {
                        args.Fail(DiagnosticDescriptors.PruneTargetInvalid, "Targets", target, $"is a {layer.KindName}, which has no weight to prune");
                        continue;
                    }
                    long weights = WeightCount(layer);
                    globalWeights += weights;
                    if (method is "LnStructured" or "RandomStructured" && (dim < -rank || dim >= rank))
                    {
                        args.Fail(DiagnosticDescriptors.PruneDimOutOfRange, "Dim", Int(dim), target, layer.KindName, Int(rank));
                        continue;
                    }
                    if (structuredMethod && rank < 2)
                    {
                        args.Fail(DiagnosticDescriptors.PruneTargetInvalid, "Targets", target, $"is a {layer.KindName}, whose weight has one dimension: structured pruning needs at least two");
                        continue;
                    }
                    long units = method switch
                    {
                        "Structured" => outs[target],
                        "LnStructured" or "RandomStructured" => ChannelCount(layer, dim < 0 ? dim + rank : dim),
                        _ => weights,
                    };
                    if (amountOk && isCount && method != "GlobalL1Unstructured" && amount > units)
                    {
                        args.Fail(DiagnosticDescriptors.AmountOutOfRange, amountArgument, FixValue.Append(new[] {
                            $"the count {Num(amount)} exceeds what '{target}' has to prune ({Int(units)} {(structuredMethod ? "channels" : "weights")})" }, Int(units)));
                        amountOk = false;
                    }
                    if (method == "Structured" && ok)
                    {
                        var error = Shrink(layers, current, outs, target, isCount ? (long)amount : RoundHalfEven(amount * units), userForward);
                        if (error is not null) args.Fail(DiagnosticDescriptors.StructuredCannotRewrite, "Targets", target, error);
                    }
                }
                if (amountOk && isCount && method == "GlobalL1Unstructured" && amount > globalWeights)
                    args.Fail(DiagnosticDescriptors.AmountOutOfRange, amountArgument, FixValue.Append(new[] { $"the count {Num(amount)} exceeds the targets' {Int(globalWeights)} weights" }, Int(globalWeights)));

                passes.Add(new PassSpec("Prune", method, amount, isCount, targets.ToEquatableArray(), n, dim, fineTune));
            }

            if (!ok) return null;
            return (passes.ToEquatableArray(), current.Values.Sum(l => l.Parameters));
        }

        /// <summary>
        /// Applies a structured cut of <paramref name="k"/> output units of <paramref name="target"/> to the layer table:
        /// the target, a BatchNorm right after it and the consumer shrink. Returns why it cannot, or null.
        /// </summary>
        private static string? Shrink(IReadOnlyList<LayerSpec> order, Dictionary<string, LayerSpec> current, Dictionary<string, long> outs,
            string target, long k, bool userForward)
        {
            if (userForward) return "the model has a hand-written forward, so the compiler cannot see which layer consumes its outputs";
            var layer = current[target];
            if (layer.Kind is not (LayerKind.Linear or LayerKind.Conv2d))
                return $"it is a {layer.KindName}; structured pruning removes Linear neurons or Conv2d channels";
            if (layer.Kind == LayerKind.Conv2d && layer.Args.Groups != 1) return "it is a grouped convolution";
            long keep = outs[target] - k;
            if (keep < 1) return $"it would remove all {outs[target]} of its outputs";

            int index = order.ToList().FindIndex(l => l.MemberName == target);
            var rewrites = new List<(string Name, LayerSpec After)>();
            bool flattened = false;
            for (int i = index + 1; i < order.Count; i++)
            {
                var next = current[order[i].MemberName];
                if (PassThrough.Contains(next.Kind)) continue;
                if (next.Kind == LayerKind.BatchNorm2d && layer.Kind == LayerKind.Conv2d)
                {
                    rewrites.Add((next.MemberName, next with { Args = next.Args with { In = keep }, Parameters = 2 * keep }));
                    continue;
                }
                // A convolution's channels may reach a Linear through a Flatten over (C, H, W): each channel is then a
                // run of H·W inputs of the Linear, all removed together.
                if (next.Kind == LayerKind.Flatten && layer.Kind == LayerKind.Conv2d && !flattened && next.Args.Dim == 1 && next.Args.EndDim == -1)
                {
                    flattened = true;
                    continue;
                }
                bool consumes = next.Kind == LayerKind.Linear && (layer.Kind == LayerKind.Linear || flattened)
                             || next.Kind == LayerKind.Conv2d && layer.Kind == LayerKind.Conv2d && !flattened && next.Args.Groups == 1;
                long spatial = flattened ? next.Args.In / Math.Max(1, outs[target]) : 1;
                if (!consumes || spatial * outs[target] != next.Args.In)
                    return next.Kind == LayerKind.Model
                        ? $"its outputs feed the composed model '{next.MemberName}', whose input size is fixed"
                        : $"its outputs reach '{next.MemberName}' ({next.KindName}), which the compiler cannot rewrite for fewer inputs";
                var field = new[] { layer, next }.Concat(rewrites.Select(r => current[r.Name])).FirstOrDefault(l => l.IsField);
                if (field is not null)
                    return $"the cut replaces '{field.MemberName}', which is declared as a field and cannot be replaced; declare it as a partial property";
                long perInput = WeightCount(next) / Math.Max(1, next.Args.In);
                rewrites.Add((next.MemberName, next with { Args = next.Args with { In = keep * spatial }, Parameters = next.Parameters - k * spatial * perInput }));
                long perOutput = WeightCount(layer) / Math.Max(1, outs[target]) + (layer.Args.Bias ? 1 : 0);
                current[target] = layer with { Args = layer.Args with { Out = keep }, Parameters = layer.Parameters - k * perOutput };
                outs[target] = keep;
                foreach (var (name, after) in rewrites) current[name] = after;
                return null;
            }
            return "it is the last layer with weights: removing its outputs would change the model's output shape";
        }

        /// <summary>Dimensions of the layer's <c>weight</c>; 0 when it has none.</summary>
        private static int WeightRank(LayerKind kind) => kind switch
        {
            LayerKind.Linear or LayerKind.Embedding => 2,
            LayerKind.Conv1d => 3,
            LayerKind.Conv2d => 4,
            LayerKind.BatchNorm1d or LayerKind.BatchNorm2d or LayerKind.LayerNorm => 1,
            _ => 0,
        };

        /// <summary>Elements of the layer's <c>weight</c>: its parameters less the bias (or, for norms, half of them).</summary>
        private static long WeightCount(LayerSpec l) => l.Kind switch
        {
            LayerKind.Linear or LayerKind.Conv1d or LayerKind.Conv2d => l.Parameters - (l.Args.Bias ? l.Args.Out : 0),
            LayerKind.BatchNorm1d or LayerKind.BatchNorm2d or LayerKind.LayerNorm => l.Parameters / 2,
            _ => l.Parameters,
        };

        private static long OutSize(LayerSpec l) => l.Kind == LayerKind.Embedding ? l.Args.Count : l.Args.Out;

        /// <summary>Size of the weight along <paramref name="dim"/> (non-negative): (out, in[/groups], kernel...).</summary>
        private static long ChannelCount(LayerSpec l, int dim)
        {
            if (dim == 0) return OutSize(l);
            if (dim == 1) return l.Kind == LayerKind.Embedding ? l.Args.Out : l.Args.In / Math.Max(1, l.Args.Groups);
            return l.Args.Kernel;
        }

        /// <summary>Python's round(): half to even, on the double product (as torch.nn.utils.prune does).</summary>
        internal static long RoundHalfEven(double value) => (long)Math.Round(value, MidpointRounding.ToEven);

    }
}
