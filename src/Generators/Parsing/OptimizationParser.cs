using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using Microsoft.CodeAnalysis;
using ModelDsl.Generators.Dsl;
using ModelDsl.Generators.Diagnostics;
using ModelDsl.Generators.Model;
using static ModelDsl.Generators.Parsing.PlanArguments;
using ModelDsl.Runtime.Pruning;
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
            var outs = layers.ToDictionary(l => l.MemberName, l => l.Kind.WeightSize(l.Args, 0), StringComparer.Ordinal);

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
                    if (args.Enum("mode", QuantizeMode.DynamicInt8, DiagnosticDescriptors.InvalidPassSetting) is not { } mode) continue;
                    if (!layers.Any(l => l.Kind.Quantizes))
                        report(DiagnosticDescriptors.NothingToQuantize, reader.ArgumentLocation(null), new[] { mode.ToString() });
                    // The pass swaps each Linear through ReplaceLayer, which a layer declared as a field cannot take.
                    foreach (var field in layers.Where(l => l.Kind.QuantizeReplacesModule && l.IsField))
                        args.Fail(DiagnosticDescriptors.PassReplacesField, null, "[Quantize] replaces every Linear layer with an int8 one", field.MemberName, field.KindName);
                    quantized = true;
                    passes.Add(new QuantizeSpec(mode));
                    continue;
                }

                // [Prune]
                if (quantized)
                {
                    args.Fail(DiagnosticDescriptors.PruneAfterQuantize, null);
                    continue;
                }
                PruneMethod? declared = args.Enum("method", PruneMethod.L1Unstructured, DiagnosticDescriptors.InvalidPassSetting);
                bool isCount = attribute.AttributeConstructor.Parameters.Length > 1 && attribute.AttributeConstructor.Parameters[1].Type.SpecialType == SpecialType.System_Int32;
                string amountArgument = isCount ? "count" : "amount";
                double amount = isCount ? args.Get(amountArgument, 0) : args.Get(amountArgument, 0.0);
                double n = args.Get(nameof(PruneAttribute.N), PlanDefaults.N);
                int dim = args.Get(nameof(PruneAttribute.Dim), PlanDefaults.Dim);
                int fineTune = args.Get(nameof(PruneAttribute.FineTuneEpochs), 0);
                var targets = values.TryGetValue(nameof(PruneAttribute.Targets), out var t) && t.Kind == TypedConstantKind.Array && !t.IsNull
                    ? t.Values.Select(v => v.Value as string ?? "").ToArray()
                    : Array.Empty<string>();

                if (declared is not { } method) continue;
                if (fineTune < 0) args.Fail(DiagnosticDescriptors.InvalidPassSetting, nameof(PruneAttribute.FineTuneEpochs), $"FineTuneEpochs is {fineTune}; it must be 0 or more");
                if (!(n > 0)) args.Fail(DiagnosticDescriptors.InvalidPassSetting, nameof(PruneAttribute.N), $"N is {Num(n)}; the norm's order must be positive (1, 2, or double.PositiveInfinity)");
                if (targets.Length == 0)
                {
                    args.Fail(DiagnosticDescriptors.PruneWithoutTargets, nameof(PruneAttribute.Targets), method.ToString());
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

                // Checked above, so it cannot throw; an invalid amount fails the plan (ok is false) and is never emitted.
                var pruneAmount = !amountOk ? default : isCount ? PruneAmount.Of((long)amount) : PruneAmount.Of(amount);
                bool structuredMethod = method is PruneMethod.LnStructured or PruneMethod.RandomStructured or PruneMethod.Structured;
                long globalWeights = 0;
                foreach (var target in targets)
                {
                    if (!current.TryGetValue(target, out var layer))
                    {
                        args.Fail(DiagnosticDescriptors.PruneTargetInvalid, "Targets", target, $"is not a layer of the model (its layers: {string.Join(", ", layers.Select(l => l.MemberName))})");
                        continue;
                    }
                    if (layer.Kind.Recurrent)
                    {
                        args.Fail(DiagnosticDescriptors.PruneRecurrentLayer, "Targets", target, layer.KindName, method.ToString());
                        continue;
                    }
                    int rank = layer.Kind.WeightRank;
                    if (rank == 0)
                    {
                        args.Fail(DiagnosticDescriptors.PruneTargetInvalid, "Targets", target, $"is a {layer.KindName}, which has no weight to prune");
                        continue;
                    }
                    long weights = WeightCount(layer);
                    globalWeights += weights;
                    if (method is PruneMethod.LnStructured or PruneMethod.RandomStructured && (dim < -rank || dim >= rank))
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
                        PruneMethod.Structured => outs[target],
                        PruneMethod.LnStructured or PruneMethod.RandomStructured => ChannelCount(layer, dim < 0 ? dim + rank : dim),
                        _ => weights,
                    };
                    if (amountOk && isCount && method != PruneMethod.GlobalL1Unstructured && amount > units)
                    {
                        args.Fail(DiagnosticDescriptors.AmountOutOfRange, amountArgument, FixValue.Append(new[] {
                            $"the count {Num(amount)} exceeds what '{target}' has to prune ({Int(units)} {(structuredMethod ? "channels" : "weights")})" }, Int(units)));
                        amountOk = false;
                    }
                    if (method == PruneMethod.Structured && ok && !userForward && ThroughMerge(layers, current, target) is { } merge)
                        args.Fail(DiagnosticDescriptors.StructuredThroughMerge, "Targets", target, merge);
                    else if (method == PruneMethod.Structured && ok)
                    {
                        var error = Shrink(layers, current, outs, target, pruneAmount.NumberOf(units), userForward);
                        if (error is not null) args.Fail(DiagnosticDescriptors.StructuredCannotRewrite, "Targets", target, error);
                    }
                }
                if (amountOk && isCount && method == PruneMethod.GlobalL1Unstructured && amount > globalWeights)
                    args.Fail(DiagnosticDescriptors.AmountOutOfRange, amountArgument, FixValue.Append(new[] { $"the count {Num(amount)} exceeds the targets' {Int(globalWeights)} weights" }, Int(globalWeights)));

                passes.Add(new PruneSpec(method, pruneAmount, targets.ToEquatableArray(), n, dim, fineTune));
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
            if (!layer.Kind.CanCut)
                return $"it is a {layer.KindName}; structured pruning removes Linear neurons or Conv2d channels";
            if (Groups(layer) != 1) return "it is a grouped convolution";
            long keep = outs[target] - k;
            if (keep < 1) return $"it would remove all {outs[target]} of its outputs";

            var (after, path) = Walk(order, current, target);
            if (path.Consumer >= 0)
            {
                var next = after[path.Consumer];
                // Through a Flatten over (C, H, W), each channel is a run of H·W inputs of the Linear, all removed together.
                long spatial = path.Flattened ? next.Args.In / Math.Max(1, outs[target]) : 1;
                if (spatial * outs[target] == next.Args.In)
                {
                    var norm = path.Norm >= 0 ? after[path.Norm] : null;
                    var field = new[] { layer, next, norm }.FirstOrDefault(l => l is { IsField: true });
                    if (field is not null)
                        return $"the cut replaces '{field.MemberName}', which is declared as a field and cannot be replaced; declare it as a partial property";
                    long perInput = WeightCount(next) / Math.Max(1, next.Args.In);
                    current[next.MemberName] = next with { Args = next.Args with { In = keep * spatial }, Parameters = next.Parameters - k * spatial * perInput };
                    if (norm is not null) current[norm.MemberName] = norm with { Args = norm.Args with { In = keep }, Parameters = 2 * keep };
                    long perOutput = WeightCount(layer) / Math.Max(1, outs[target]) + (layer.Args.Bias ? 1 : 0);
                    current[target] = layer with { Args = layer.Args with { Out = keep }, Parameters = layer.Parameters - k * perOutput };
                    outs[target] = keep;
                    return null;
                }
            }
            int stop = path.Consumer >= 0 ? path.Consumer : path.Blocker;
            if (stop >= 0)
            {
                var blocker = after[stop];
                return blocker.Kind == LayerKind.Model
                    ? $"its outputs feed the composed model '{blocker.MemberName}', whose input size is fixed"
                    : $"its outputs reach '{blocker.MemberName}' ({blocker.KindName}), which the compiler cannot rewrite for fewer inputs";
            }
            return "it is the last layer with weights: removing its outputs would change the model's output shape";
        }

        /// <summary>The layers after <paramref name="target"/> in declaration order, and the structured cut's walk over them.</summary>
        private static (List<LayerSpec> After, CutPath Path) Walk(IReadOnlyList<LayerSpec> order, Dictionary<string, LayerSpec> current, string target)
        {
            int index = order.ToList().FindIndex(l => l.MemberName == target);
            var after = order.Skip(index + 1).Select(l => current[l.MemberName]).ToList();
            return (after, StructuredCut.Walk(current[target].Kind, after.Select(l => new CutLayer(l.Kind, Groups(l), l.Args.Own is FlattenArguments { FlattensChannels: true })).ToList()));
        }

        /// <summary>
        /// Graph models, until coupled channels are cut together (DepGraph groups): why a structured cut of
        /// <paramref name="target"/> would reach a merge or a layer read elsewhere, or null when the walk from the target
        /// to its consumer is a plain chain — each layer read by the next alone, each reading the one before.
        /// </summary>
        private static string? ThroughMerge(IReadOnlyList<LayerSpec> order, Dictionary<string, LayerSpec> current, string target)
        {
            var (after, path) = Walk(order, current, target);
            int stop = path.Consumer >= 0 ? path.Consumer : path.Blocker >= 0 ? path.Blocker : after.Count - 1;
            var span = new List<LayerSpec> { current[target] };
            span.AddRange(after.Take(stop + 1));
            for (int i = 0; i < span.Count; i++)
            {
                var layer = span[i];
                if (i > 0 && !(layer.Sources.Count == 1 && layer.Sources[0] == span[i - 1].MemberName))
                    return layer.Kind.IsMerge
                        ? $"its outputs reach the {layer.KindName} '{layer.MemberName}', and a structured cut is not yet supported through a merge (its channels must be cut together with the merge's other sources)"
                        : $"'{layer.MemberName}' reads '{string.Join("', '", layer.Sources)}', not the layer before it: a structured cut is not yet supported through a merge or a layer reading From elsewhere";
                if (i == span.Count - 1) break;
                var elsewhere = order.FirstOrDefault(l => l.MemberName != span[i + 1].MemberName && l.Sources.Contains(layer.MemberName));
                if (elsewhere is not null)
                    return $"'{elsewhere.MemberName}' also reads '{layer.MemberName}', and a structured cut is not yet supported through a merge or a layer reading From elsewhere (both readers would have to shrink together)";
            }
            return null;
        }

        private static long WeightCount(LayerSpec l) => l.Kind.WeightCount(l);

        /// <summary>Size of the weight along <paramref name="dim"/> (non-negative): (out, in[/groups], kernel...).</summary>
        private static long ChannelCount(LayerSpec l, int dim) => l.Kind.WeightSize(l.Args, dim);

        /// <summary>A convolution's groups; 1 for every other layer.</summary>
        private static long Groups(LayerSpec l) => (l.Args.Own as WindowArguments)?.Groups ?? 1;
    }
}
