namespace ModelDsl.Generators.Parsing
{
    /// <summary>A layer as shape inference needs it: what was declared, with no Roslyn symbol or location.</summary>
    internal sealed record LayerInput(
        string Name, bool IsField, string Accessibility, string TypeName, string TypeDisplay, LayerKind Kind, LayerParams Params,
        string AttributeText, bool Broken, string? TiedTo = null);

    /// <summary>What kind of problem shape inference found.</summary>
    internal enum ShapeProblemKind
    {
        /// <summary>A shape rule failed (<see cref="ShapeProblem.Error"/> says which).</summary>
        Shape,
        /// <summary>The input is unknown (a hand-written forward) and the layer does not state the size inference would supply.</summary>
        NotInferable,
        /// <summary>A tied weight does not fit.</summary>
        Tie,
        /// <summary>A source (<c>From</c>, a merge's) names no layer, the layer itself or a later one.</summary>
        Source,
        /// <summary>A merge with fewer than two sources.</summary>
        TooFewSources,
        /// <summary>A layer of a graph model whose output nothing reads (a warning).</summary>
        Unused,
    }

    /// <summary>
    /// One problem shape inference found: the layer (an index into the inputs), the argument it concerns (null: the
    /// attribute, or the member for a composed model), the message arguments and, for a size inference could have
    /// supplied, that size (for the IDE's fix).
    /// </summary>
    internal sealed record ShapeProblem(int Layer, ShapeProblemKind Kind, ShapeErrorKind? Error, string? Argument, string[] Args, long Inferred = -1);

    /// <summary>
    /// Shape inference over a model's layers without Roslyn: each layer's rule (src/Shared/ShapeRules.cs) runs on its
    /// source's output — the previous layer's in a chain, the layer <c>From</c> names, or a merge's sources in a graph
    /// model — tied weights are checked and counted once, and problems come back as values for the parser to report
    /// where they were written.
    /// </summary>
    internal static class ShapeInference
    {
        /// <summary>The name a source gives the model input.</summary>
        public const string InputName = "input";

        /// <summary>The layers' shapes and parameter counts, and the model's output, from inference.</summary>
        public sealed class Shapes
        {
            public List<LayerSpec> Layers = new();
            /// <summary>Null when unknown at compile time (own forward, a composed model with one, or an error).</summary>
            public Dim[]? Output;
            public bool OutputIsInteger;
            public bool Failed;
            public long Parameters;
            /// <summary>Whether any layer names its sources (From, a merge) or the model names its output layer.</summary>
            public bool IsGraph;
            /// <summary>What went wrong, in order, for the caller to report where it was written.</summary>
            public List<ShapeProblem> Problems = new();
        }

        /// <summary>Whether the layers form a graph: a layer names its sources, or <paramref name="outputLayer"/> is given.</summary>
        public static bool IsGraph(IReadOnlyList<LayerInput> layers, string? outputLayer) =>
            outputLayer is not null || layers.Any(l => l.Kind.IsMerge || l.Params.From is not null);

        /// <summary>
        /// Runs each layer's shape rule on its sources' outputs (<paramref name="input"/> for the model input; null
        /// when a hand-written forward makes it unknown), then accounts for tied weights. <paramref name="failedBefore"/>:
        /// the declaration already failed, so nothing is inferred. The first shape error stops inference, so one mistake
        /// gives one diagnostic rather than a cascade; every source that names no earlier layer is reported (each is
        /// independent of the others). <paramref name="outputLayer"/>: the layer whose output is the model's (null: the
        /// last); the parser has checked that it names a layer.
        /// </summary>
        public static Shapes Infer(string modelName, IReadOnlyList<LayerInput> layers, Dim[]? input, bool inputIsInteger, bool userForward, bool failedBefore,
            CancellationToken cancellation = default, string? outputLayer = null, IReadOnlyList<(string Name, Dim[] Shape)>? namedInputs = null)
        {
            // The model's inputs by source name: "input", or the names [Model(Inputs)] declares (their own shapes).
            var modelInputs = namedInputs is null
                ? new Dictionary<string, Dim[]?>(StringComparer.Ordinal) { [InputName] = input }
                : namedInputs.ToDictionary(i => i.Name, i => failedBefore ? null : (Dim[]?)i.Shape, StringComparer.Ordinal);
            string firstInput = namedInputs is null ? InputName : namedInputs[0].Name;
            var problems = new List<ShapeProblem>();
            var specs = new List<LayerSpec>();
            var index = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i < layers.Count; i++)
                if (!index.ContainsKey(layers[i].Name)) index[layers[i].Name] = i;
            // Each layer's output (null: unknown at compile time) and whether it holds integer ids.
            var outputs = new Dim[]?[layers.Count];
            var integer = new bool[layers.Count];
            string? unknownReason = userForward ? $"model '{modelName}' defines its own forward" : null;
            long total = 0;
            bool shapesFailed = failedBefore;
            // Failed only through sizes that must be explicit (MD0113): later layers are still checked for the same.
            bool onlyNotInferable = false;
            bool graph = IsGraph(layers, outputLayer) || namedInputs is not null;
            var read = new bool[layers.Count];

            for (int index_ = 0; index_ < layers.Count; index_++)
            {
                cancellation.ThrowIfCancellationRequested();
                var layer = layers[index_];
                var p = layer.Params;
                LayerShape? result = null;

                var sources = Sources(layer, index_, layers, firstInput);
                bool sourcesValid = CheckSources(layer, index_, sources, index, modelInputs, problems);
                if (!sourcesValid) shapesFailed = true;
                var x = new Dim[]?[sources.Length];
                var xInteger = new bool[sources.Length];
                for (int k = 0; k < sources.Length; k++)
                {
                    if (modelInputs.TryGetValue(sources[k], out var modelInput)) (x[k], xInteger[k]) = (modelInput, inputIsInteger);
                    else if (index.TryGetValue(sources[k], out int j) && j < index_) { (x[k], xInteger[k]) = (outputs[j], integer[j]); read[j] = true; }
                }
                Dim[]? current = sourcesValid && x.Length > 0 && x.All(d => d is not null) ? x[0] : null;

                if (layer.Broken)
                {
                    shapesFailed = true;
                }
                else if (!shapesFailed && current is not null)
                {
                    result = layer.Kind.IsMerge
                        ? ShapeRules.InferMerge(layer.Kind, p, sources, x!)
                        : ShapeRules.Infer(layer.Kind, p, current, xInteger[0]);
                    if (layer.Kind.IsMerge && result.Error is null) result.OutputIsInteger = xInteger.All(i => i);
                }
                else if (!shapesFailed || onlyNotInferable)
                {
                    // Output of the previous step unknown (own forward, or a composed model with one): check what
                    // can be checked from the layer alone, and require the sizes inference would have supplied.
                    // Every such layer is reported at once: each is independent of the others, so fixing one would
                    // only reveal the next.
                    if (layer.Kind.InputSizeName is { } inputSize && p.In == -1)
                    {
                        problems.Add(new ShapeProblem(index_, ShapeProblemKind.NotInferable, null, null,
                            new[] { layer.Name, inputSize, unknownReason ?? "", layer.Kind.ExplicitExample(p) }));
                        shapesFailed = true;
                        onlyNotInferable = true;
                    }
                    else if (!shapesFailed)
                    {
                        result = ShapeRules.Infer(layer.Kind, p, StandInInput(layer.Kind, p), layer.Kind.StandInIsInteger(p));
                        if (result.Error is null) result.Output = Array.Empty<Dim>();
                    }
                }

                if (result?.Error is { } error)
                {
                    problems.Add(new ShapeProblem(index_, ShapeProblemKind.Shape, error.Kind, layer.Kind == LayerKind.Model && error.Kind != ShapeErrorKind.RepeatedBlockShape ? null : error.Argument,
                        new[] { layer.Name, error.Message }, error.Inferred));
                    shapesFailed = true;
                    result = null;
                }

                string outputText = "?";
                long parameters = 0;
                long resolvedIn = p.In;
                if (result is not null)
                {
                    parameters = result.Parameters;
                    resolvedIn = result.ResolvedIn == -1 ? p.In : result.ResolvedIn;
                    if (current is not null && result.Output.Length > 0)
                    {
                        outputs[index_] = result.Output;
                        integer[index_] = result.OutputIsInteger;
                        outputText = ShapeText.Format(result.Output);
                    }
                    if (layer.Kind == LayerKind.Model && p.SubOutput is null && !shapesFailed)
                    {
                        outputs[index_] = null;
                        unknownReason = $"the output of '{layer.Name}' (model '{layer.TypeDisplay}', which defines its own forward) is unknown at compile time";
                    }
                    total = unchecked(total + parameters);
                }

                specs.Add(new LayerSpec(
                    layer.Name, layer.IsField, layer.Accessibility, layer.TypeName, layer.Kind, layer.AttributeText,
                    layer.Kind == LayerKind.Model ? layer.TypeDisplay : layer.Kind.ToString(),
                    new LayerArgs(resolvedIn, p.Out, p.Count, p.Bias, layer.Kind == LayerKind.Linear ? layer.TiedTo : null, p.Own),
                    outputText, parameters, sources.ToEquatableArray()));
            }

            int outputIndex = outputLayer is not null && index.TryGetValue(outputLayer, out int named) ? named : layers.Count - 1;
            if (graph && !userForward && !problems.Any(q => q.Kind is ShapeProblemKind.Source or ShapeProblemKind.TooFewSources))
            {
                // What nothing reads is computed for nothing (the output layer is read by the caller); a hand-written
                // forward reads what it likes.
                for (int i = 0; i < layers.Count; i++)
                    if (!read[i] && i != outputIndex)
                        problems.Add(new ShapeProblem(i, ShapeProblemKind.Unused, null, null, new[] { layers[i].Name, layers[outputIndex].Name }));
            }

            if (!shapesFailed && specs.Any(l => l.Args.TiedTo is not null))
            {
                // Tying makes the Linear's weight the embedding's: one parameter, counted once (at the embedding).
                for (int i = 0; i < specs.Count; i++)
                {
                    if (specs[i].Args.TiedTo is not { } tiedTo) continue;
                    string? problem = TieProblem(specs[i], tiedTo, specs);
                    if (problem is not null)
                    {
                        problems.Add(new ShapeProblem(i, ShapeProblemKind.Tie, null, "TiedTo", new[] { specs[i].MemberName, problem }));
                        shapesFailed = true;
                        break;
                    }
                    long shared = specs[i].Args.In * specs[i].Args.Out;
                    specs[i] = specs[i] with { Parameters = specs[i].Parameters - shared };
                    total = unchecked(total - shared);
                }
            }

            var output = layers.Count == 0 ? input : outputs[outputIndex];
            bool outputIsInteger = layers.Count == 0 ? inputIsInteger : integer[outputIndex];
            return new Shapes
            {
                Layers = specs, Output = shapesFailed ? null : output, OutputIsInteger = outputIsInteger, Failed = shapesFailed,
                Parameters = total, IsGraph = graph, Problems = problems,
            };
        }

        /// <summary>
        /// The layer's sources: a merge's, else the layer <c>From</c> names, else the previous layer (the model input
        /// for the first). A null name reads as "null", which names no layer.
        /// </summary>
        private static string[] Sources(LayerInput layer, int position, IReadOnlyList<LayerInput> layers, string firstInput)
        {
            if (layer.Kind.IsMerge) return (layer.Params.Sources ?? Array.Empty<string?>()).Select(s => s ?? "null").ToArray();
            if (layer.Params.From is { } from) return new[] { from };
            return new[] { position == 0 ? firstInput : layers[position - 1].Name };
        }

        /// <summary>Whether every source names an input or an earlier layer, and a merge has two or more; problems otherwise.</summary>
        private static bool CheckSources(LayerInput layer, int position, string[] sources, Dictionary<string, int> index, Dictionary<string, Dim[]?> inputs,
            List<ShapeProblem> problems)
        {
            if (layer.Kind.IsMerge && sources.Length < 2)
            {
                problems.Add(new ShapeProblem(position, ShapeProblemKind.TooFewSources, null, null,
                    new[] { layer.Name, layer.Kind.Name, sources.Length.ToString(System.Globalization.CultureInfo.InvariantCulture) }));
                return false;
            }
            bool valid = true;
            if (layer.Kind.IsMerge && layer.Params.From is { } from)
            {
                // From is on every layer attribute (the base class); a merge reads the sources its attribute names.
                problems.Add(new ShapeProblem(position, ShapeProblemKind.Source, null, "From", new[] { layer.Name, from,
                    $"would be ignored: a {layer.Kind.Name} reads the layers its attribute names; remove From" }));
                valid = false;
            }
            for (int k = 0; k < sources.Length; k++)
            {
                string source = sources[k];
                // (Several inputs named like a layer are the parser's MD0031.)
                if (source == InputName && inputs.ContainsKey(InputName) && inputs.Count == 1 && index.ContainsKey(InputName))
                {
                    problems.Add(new ShapeProblem(position, ShapeProblemKind.Source, null, layer.Kind.SourceArgument(k), new[] { layer.Name, source,
                        $"is ambiguous: \"{InputName}\" names the model input, and a layer of this model is also called '{InputName}'; rename that layer" }));
                    valid = false;
                    continue;
                }
                if (inputs.ContainsKey(source)) continue;
                string? why = !index.TryGetValue(source, out int j) ? $"names no layer of this model (write nameof(Layer) of an earlier layer, or {InputsText(inputs)})"
                    : j == position ? "is the layer itself: a layer cannot read its own output"
                    : j > position ? $"is declared after it: a layer reads only earlier layers (no cycles, no forward references); move '{source}' before '{layer.Name}'"
                    : null;
                if (why is null) continue;
                problems.Add(new ShapeProblem(position, ShapeProblemKind.Source, null, layer.Kind.SourceArgument(k), new[] { layer.Name, source, why }));
                valid = false;
            }
            return valid;
        }

        /// <summary>How a source names the model's inputs, for a message.</summary>
        private static string InputsText(Dictionary<string, Dim[]?> inputs) => inputs.Count == 1
            ? $"\"{inputs.Keys.First()}\" for the model input"
            : "an input: " + string.Join(", ", inputs.Keys.Select(k => "\"" + k + "\""));

        /// <summary>Why a Linear cannot share the weight of the layer <paramref name="tiedTo"/> names, or null if it can.</summary>
        private static string? TieProblem(LayerSpec linear, string tiedTo, List<LayerSpec> layers)
        {
            var target = layers.FirstOrDefault(l => l.MemberName == tiedTo);
            if (target is null)
                return $"TiedTo = \"{tiedTo}\" names no layer of this model; write nameof(...) of an [Embedding] layer";
            if (target.Kind != LayerKind.Embedding)
                return $"TiedTo names '{tiedTo}', a {target.KindName}; a Linear can share the table of an [Embedding]";
            if (target.Args.Count != linear.Args.Out || target.Args.Out != linear.Args.In)
                return $"its weight is (out {linear.Args.Out}, in {linear.Args.In}), but '{tiedTo}' holds a ({target.Args.Count}, {target.Args.Out}) table; " +
                       $"out-features must equal the embedding count and in-features its dimension";
            return null;
        }

        /// <summary>
        /// A stand-in input for checking a layer whose real input is unknown: symbolic everywhere except the size
        /// the layer states explicitly, so only the layer's own arguments are judged.
        /// </summary>
        private static Dim[] StandInInput(LayerKind kind, LayerParams p) =>
            kind.StandInInput(p, Dim.Sym("B"), p.In > 0 ? Dim.Of(p.In) : Dim.Sym("C"));
    }
}
