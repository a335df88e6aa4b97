using static ModelDsl.Generators.Parsing.PlanArguments;
using ModelDsl.Runtime.Pruning;

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
            Action<DiagnosticDescriptor, Location?, string[]> report, Dim[]? input = null, string? outputLayer = null, Func<string, Block?>? blocks = null)
        {
            var passes = new List<PassSpec>();
            bool ok = true;
            QuantizeMode? quantized = null;
            var model = new Scope(new Block(layers, input, outputLayer, userForward, blocks ?? (_ => null)), null, "", "");

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
                    if (quantized is { } first)
                    {
                        args.Fail(DiagnosticDescriptors.SecondQuantize, null, mode.ToString(), first.ToString(),
                            mode == QuantizeMode.StaticInt8 && first != QuantizeMode.StaticInt8
                                ? "static int8 observes and converts float Conv2d and Linear layers, and the first pass has already made the Linear layers int8"
                                : "a model's layers are quantised once");
                        continue;
                    }
                    quantized = mode;
                    bool isStatic = mode == QuantizeMode.StaticInt8;
                    int calibration = args.Get(nameof(QuantizeAttribute.CalibrationBatches), PlanDefaults.CalibrationBatches);
                    if (isStatic && calibration < 1)
                        args.Fail(DiagnosticDescriptors.CalibrationBatchesOutOfRange, nameof(QuantizeAttribute.CalibrationBatches), Int(calibration));
                    if (!isStatic && args.Has(nameof(QuantizeAttribute.CalibrationBatches)))
                        report(DiagnosticDescriptors.CalibrationWithoutStatic, reader.ArgumentLocation(nameof(QuantizeAttribute.CalibrationBatches)), new[] { mode.ToString() });
                    // Static int8 converts Conv2d and Linear (composed models' too); dynamic modes Linear, LSTM and GRU.
                    bool Converts(LayerSpec l) => isStatic ? l.Kind == LayerKind.Conv2d || l.Kind == LayerKind.Linear || l.Kind == LayerKind.Model : l.Kind.Quantizes;
                    if (!layers.Any(Converts))
                        report(isStatic ? DiagnosticDescriptors.NothingToQuantizeStatically : DiagnosticDescriptors.NothingToQuantize, reader.ArgumentLocation(null), new[] { mode.ToString() });
                    // The pass swaps each converted layer through ReplaceLayer, which a layer declared as a field cannot take.
                    string replaces = isStatic ? "[Quantize(QuantizeMode.StaticInt8)] replaces every Conv2d and Linear layer with an int8 one" : "[Quantize] replaces every Linear layer with an int8 one";
                    foreach (var field in layers.Where(l => (isStatic ? l.Kind == LayerKind.Conv2d || l.Kind == LayerKind.Linear : l.Kind.QuantizeReplacesModule) && l.IsField))
                        args.Fail(DiagnosticDescriptors.PassReplacesField, null, replaces, field.MemberName, field.KindName);
                    passes.Add(new QuantizeSpec(mode, calibration));
                    continue;
                }

                // [Prune]
                if (quantized is not null)
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
                // A target coupled to an earlier one of this pass was cut with its group.
                var cut = new HashSet<string>(StringComparer.Ordinal);
                // A dotted target names a layer inside a composed model or repeated block ("Stage1.*.Conv1": every copy's).
                foreach (var (scope, target) in targets.SelectMany(t => Resolve(model, t, args)))
                {
                    var layer = scope.Current[target];
                    string path = scope.Prefix + target;
                    if (layer.Kind.Recurrent)
                    {
                        args.Fail(DiagnosticDescriptors.PruneRecurrentLayer, "Targets", path, layer.KindName, method.ToString());
                        continue;
                    }
                    int rank = layer.Kind.WeightRank;
                    if (rank == 0)
                    {
                        args.Fail(DiagnosticDescriptors.PruneTargetInvalid, "Targets", path, $"is a {layer.KindName}, which has no weight to prune");
                        continue;
                    }
                    long weights = WeightCount(layer);
                    globalWeights += weights;
                    if (method is PruneMethod.LnStructured or PruneMethod.RandomStructured && (dim < -rank || dim >= rank))
                    {
                        args.Fail(DiagnosticDescriptors.PruneDimOutOfRange, "Dim", Int(dim), path, layer.KindName, Int(rank));
                        continue;
                    }
                    if (structuredMethod && rank < 2)
                    {
                        args.Fail(DiagnosticDescriptors.PruneTargetInvalid, "Targets", path, $"is a {layer.KindName}, whose weight has one dimension: structured pruning needs at least two");
                        continue;
                    }
                    // Already cut with an earlier target's group in this pass: the runtime skips it too, so its amount is not checked.
                    if (method == PruneMethod.Structured && cut.Contains(path)) continue;
                    long units = method switch
                    {
                        PruneMethod.Structured => scope.Outs[target],
                        PruneMethod.LnStructured or PruneMethod.RandomStructured => ChannelCount(layer, dim < 0 ? dim + rank : dim),
                        _ => weights,
                    };
                    if (amountOk && isCount && method != PruneMethod.GlobalL1Unstructured && amount > units)
                    {
                        args.Fail(DiagnosticDescriptors.AmountOutOfRange, amountArgument, FixValue.Append(new[] {
                            $"the count {Num(amount)} exceeds what '{path}' has to prune ({Int(units)} {(structuredMethod ? "channels" : "weights")})" }, Int(units)));
                        amountOk = false;
                    }
                    if (method == PruneMethod.Structured && ok && !cut.Contains(path)
                        && Shrink(scope, target, pruneAmount, cut) is { } error)
                        args.Fail(error.Descriptor, "Targets", error.Arguments);
                }
                if (amountOk && isCount && method == PruneMethod.GlobalL1Unstructured && amount > globalWeights)
                    args.Fail(DiagnosticDescriptors.AmountOutOfRange, amountArgument, FixValue.Append(new[] { $"the count {Num(amount)} exceeds the targets' {Int(globalWeights)} weights" }, Int(globalWeights)));

                passes.Add(new PruneSpec(method, pruneAmount, targets.ToEquatableArray(), n, dim, fineTune));
            }

            if (!ok) return null;
            return (passes.ToEquatableArray(), model.Current.Values.Sum(l => l.Parameters));
        }

        /// <summary>
        /// The layers a target names (<see cref="LayerPath"/>), each with the scope — the model, or a composed model or
        /// repeated block's copy inside it — whose layer table the pass checks and changes; none, with MD0302 on
        /// <c>Targets</c>, when the path names no layer.
        /// </summary>
        private static IEnumerable<(Scope Scope, string Name)> Resolve(Scope model, string target, PlanArguments args)
        {
            var found = LayerPath.Resolve(model, target, s => s.Names, (s, name) => s.Enter(name), out string error);
            if (found is null) args.Fail(DiagnosticDescriptors.PruneTargetInvalid, "Targets", target, error);
            return found?.Select(f => (f.Scope, f.Name)) ?? Enumerable.Empty<(Scope, string)>();
        }

        /// <summary>
        /// Applies a structured cut of <paramref name="amount"/> of <paramref name="target"/>'s dependency group
        /// (<see cref="StructuredCut.Group"/>, in the target's scope) to the scope's layer table: its producers lose
        /// outputs, its BatchNorms channels and its consumers inputs; the composed layers above it lose the parameters.
        /// Returns the diagnostic that says why it cannot, or null; adds the group's producers' paths to
        /// <paramref name="cut"/>.
        /// </summary>
        private static (DiagnosticDescriptor Descriptor, string[] Arguments)? Shrink(Scope scope, string target, PruneAmount amount, HashSet<string> cut)
        {
            string path = scope.Prefix + target;
            (DiagnosticDescriptor, string[]) Cannot(string why) => (DiagnosticDescriptors.StructuredCannotRewrite, new[] { path, why });
            if (scope.Model.UserForward) return Cannot($"{(scope.Prefix.Length == 0 ? "the model" : $"'{scope.Path}'")} has a hand-written forward, so the compiler cannot see which layer consumes its outputs");
            var current = scope.Current;
            var outs = scope.Outs;
            var layer = current[target];
            if (!layer.Kind.CanCut)
                return Cannot($"it is a {layer.KindName}; structured pruning removes Linear neurons or Conv2d channels");
            if (Groups(layer) != 1) return Cannot("it is a grouped convolution");

            var nodes = scope.Model.Layers.Select(l => current[l.MemberName]).Select(l => new CutNode(l.MemberName, l.Kind, l.Sources.ToArray(), l.Kind.CanCut ? outs[l.MemberName] : -1,
                l.Kind.CanCut ? l.Args.In : -1, Groups(l), l.Args.Own is FlattenArguments { FlattensChannels: true }, (l.Args.Own as ConcatArguments)?.Dim ?? 1,
                ShapeText.Rank(l.OutputText))).ToList();
            // The input's per-sample sizes (a Concat of the input offsets the channels after it); -1 for a symbol.
            var sample = (scope.Model.Input ?? Array.Empty<Dim>()).Skip(1).Select(d => d.IsConcrete ? d.Size : -1).ToArray();
            var group = StructuredCut.Group(nodes, target, sample, scope.Model.OutputLayer);
            string members = group.Describe(scope.Prefix);
            string blocker = scope.Prefix + group.Blocker;
            switch (group.Blocked)
            {
                // Inside a block its input and output are the block's boundary: the layers around the block read and make them.
                case GroupBlock.Input or GroupBlock.Output when scope.Prefix.Length > 0:
                    return (DiagnosticDescriptors.StructuredGroupReachesBlockBoundary, new[] { path, members, group.Blocked == GroupBlock.Input ? "input" : "output", scope.Path });
                case GroupBlock.Input: return (DiagnosticDescriptors.StructuredGroupReachesInput, new[] { path, members });
                case GroupBlock.Output: return (DiagnosticDescriptors.StructuredGroupReachesOutput, new[] { path, members, blocker });
                case GroupBlock.Merge: return (DiagnosticDescriptors.StructuredGroupBreaksMerge, new[] { path, blocker, group.Reason!, members });
                case GroupBlock.ComposedBlock: return (DiagnosticDescriptors.StructuredGroupReachesComposedModel, new[] { path, members, blocker });
                case GroupBlock.Layer: return Cannot(group.Reason!);
            }
            if (group.Consumers.Count == 0) return Cannot("no layer consumes its outputs");
            long k = amount.NumberOf(group.Channels);
            long keep = group.Channels - k;
            if (keep < 1) return Cannot($"it would remove all {group.Channels} of its outputs");
            if (group.Layers.Select(n => current[n]).FirstOrDefault(l => l.IsField) is { } field)
                return Cannot($"the cut replaces '{scope.Prefix}{field.MemberName}', which is declared as a field and cannot be replaced; declare it as a partial property");

            long before = current.Values.Sum(l => l.Parameters);
            foreach (var name in group.Producers)
            {
                var p = current[name];
                long perOutput = WeightCount(p) / Math.Max(1, outs[name]) + (p.Args.Bias ? 1 : 0);
                current[name] = p with { Args = p.Args with { Out = keep }, Parameters = p.Parameters - k * perOutput };
                outs[name] = keep;
                cut.Add(scope.Prefix + name);
            }
            foreach (var norm in group.Norms)
            {
                var n = current[norm.Layer];
                current[norm.Layer] = n with { Args = n.Args with { In = n.Args.In - k }, Parameters = n.Parameters - k * (n.Parameters / Math.Max(1, n.Args.In)) };
            }
            foreach (var consumer in group.Consumers)
            {
                var c = current[consumer.Layer];
                long perInput = WeightCount(c) / Math.Max(1, c.Args.In);
                current[consumer.Layer] = c with { Args = c.Args with { In = c.Args.In - k * consumer.Spatial }, Parameters = c.Parameters - k * consumer.Spatial * perInput };
            }
            scope.Removed(before - current.Values.Sum(l => l.Parameters));
            return null;
        }

        private static long WeightCount(LayerSpec l) => l.Kind.WeightCount(l);

        /// <summary>Size of the weight along <paramref name="dim"/> (non-negative): (out, in[/groups], kernel...).</summary>
        private static long ChannelCount(LayerSpec l, int dim) => l.Kind.WeightSize(l.Args, dim);

        /// <summary>A convolution's groups; 1 for every other layer.</summary>
        private static long Groups(LayerSpec l) => (l.Args.Own as WindowArguments)?.Groups ?? 1;

        /// <summary>
        /// A model as a pass target's scope: its layers, input, output layer, whether its forward is hand-written, and
        /// the composed models its layers hold (by layer name; null for a layer that is not one).
        /// </summary>
        internal sealed record Block(IReadOnlyList<LayerSpec> Layers, Dim[]? Input, string? OutputLayer, bool UserForward, Func<string, Block?> Blocks);

        /// <summary>
        /// The layer table a plan checks and changes, one per scope a target reaches: the model's, a composed model's
        /// (at <c>"Stage2."</c>), each copy of a repeated block's (<c>"Stage1.0."</c>, its own channels: the copies are
        /// independent), and a repeated block's copies themselves (<c>"Stage1."</c>, named by index, no table). A
        /// structured cut's lost parameters go up to every composed layer above it, so the model's table counts them.
        /// </summary>
        private sealed class Scope
        {
            private readonly Scope? _parent;
            private readonly string _name;
            private readonly long _copies;
            private readonly Dictionary<string, Scope> _inner = new(StringComparer.Ordinal);

            public Scope(Block model, Scope? parent, string name, string prefix, long copies = 0)
            {
                Model = model;
                _parent = parent;
                _name = name;
                _copies = copies;
                Prefix = prefix;
                var layers = copies > 0 ? Array.Empty<LayerSpec>() : model.Layers;
                Current = layers.ToDictionary(l => l.MemberName, l => l, StringComparer.Ordinal);
                Outs = layers.ToDictionary(l => l.MemberName, l => l.Kind.WeightSize(l.Args, 0), StringComparer.Ordinal);
                Names = copies > 0
                    ? Enumerable.Range(0, (int)copies).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToArray()
                    : layers.Select(l => l.MemberName).ToArray();
            }

            /// <summary>The model whose layers (or, for a repeated block, whose copies) this scope holds.</summary>
            public Block Model { get; }
            /// <summary>The path of the scope's layers: <c>""</c> at the model, <c>"Stage1.0."</c> in a copy.</summary>
            public string Prefix { get; }
            /// <summary>The scope's own path, <c>"Stage1.0"</c>.</summary>
            public string Path => Prefix.TrimEnd(LayerPath.Separator);
            /// <summary>The layers as the passes so far left them.</summary>
            public Dictionary<string, LayerSpec> Current { get; }
            /// <summary>Each layer's outputs now (a structured cut's producers lose some).</summary>
            public Dictionary<string, long> Outs { get; }
            /// <summary>What a path segment may name here.</summary>
            public IReadOnlyList<string> Names { get; }

            /// <summary>The scope a layer (or a copy) opens; null for a layer that holds no other.</summary>
            public Scope? Enter(string name)
            {
                if (_inner.TryGetValue(name, out var known)) return known;
                Scope? inner = null;
                if (_copies > 0) inner = new Scope(Model, this, name, Prefix + name + LayerPath.Separator);
                else if (Current.TryGetValue(name, out var layer) && layer.Kind == LayerKind.Model && Model.Blocks(name) is { } block)
                {
                    long repeat = ModelKind.Repeat(layer.Args);
                    inner = new Scope(block, this, name, Prefix + name + LayerPath.Separator, repeat > 1 ? repeat : 0);
                }
                if (inner is not null) _inner[name] = inner;
                return inner;
            }

            /// <summary>A cut in this scope removed <paramref name="parameters"/>: the composed layers above it hold that many fewer.</summary>
            public void Removed(long parameters)
            {
                if (_parent is null) return;
                if (_parent.Current.TryGetValue(_name, out var layer)) _parent.Current[_name] = layer with { Parameters = layer.Parameters - parameters };
                _parent.Removed(parameters);
            }
        }
    }
}
