using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using ModelDsl.Generators.Model;
using ModelDsl.Shapes;

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
    }

    /// <summary>
    /// One problem shape inference found: the layer (an index into the inputs), the argument it concerns (null: the
    /// attribute, or the member for a composed model), the message arguments and, for a size inference could have
    /// supplied, that size (for the IDE's fix).
    /// </summary>
    internal sealed record ShapeProblem(int Layer, ShapeProblemKind Kind, ShapeErrorKind? Error, string? Argument, string[] Args, long Inferred = -1);

    /// <summary>
    /// Shape inference over a model's layers without Roslyn: each layer's rule (src/Shared/ShapeRules.cs) runs on the
    /// previous layer's output, tied weights are checked and counted once, and problems come back as values for the
    /// parser to report where they were written.
    /// </summary>
    internal static class ShapeInference
    {
        /// <summary>The layers' shapes and parameter counts, and the model's output, from inference.</summary>
        public sealed class Shapes
        {
            public List<LayerSpec> Layers = new();
            /// <summary>Null when unknown at compile time (own forward, a composed model with one, or an error).</summary>
            public Dim[]? Output;
            public bool OutputIsInteger;
            public bool Failed;
            public long Parameters;
            /// <summary>What went wrong, in order, for the caller to report where it was written.</summary>
            public List<ShapeProblem> Problems = new();
        }

        /// <summary>
        /// Runs each layer's shape rule on the previous layer's output (<paramref name="input"/> for the first; null
        /// when a hand-written forward makes it unknown), then accounts for tied weights. <paramref name="failedBefore"/>:
        /// the declaration already failed, so nothing is inferred. The first error stops inference, so one mistake
        /// gives one diagnostic rather than a cascade.
        /// </summary>
        public static Shapes Infer(string modelName, IReadOnlyList<LayerInput> layers, Dim[]? input, bool inputIsInteger, bool userForward, bool failedBefore,
            CancellationToken cancellation = default)
        {
            var problems = new List<ShapeProblem>();
            var specs = new List<LayerSpec>();
            Dim[]? current = input;
            bool currentIsInteger = inputIsInteger;
            string? unknownReason = userForward ? $"model '{modelName}' defines its own forward" : null;
            long total = 0;
            bool shapesFailed = failedBefore;
            // Failed only through sizes that must be explicit (MD0113): later layers are still checked for the same.
            bool onlyNotInferable = false;

            for (int index = 0; index < layers.Count; index++)
            {
                cancellation.ThrowIfCancellationRequested();
                var layer = layers[index];
                var p = layer.Params;
                LayerShape? result = null;

                if (layer.Broken)
                {
                    shapesFailed = true;
                }
                else if (!shapesFailed && current is not null)
                {
                    result = ShapeRules.Infer(layer.Kind, p, current, currentIsInteger);
                }
                else if (!shapesFailed || onlyNotInferable)
                {
                    // Output of the previous step unknown (own forward, or a composed model with one): check what
                    // can be checked from the layer alone, and require the sizes inference would have supplied.
                    // Every such layer is reported at once: each is independent of the others, so fixing one would
                    // only reveal the next.
                    if (layer.Kind.InputSizeName is { } inputSize && p.In == -1)
                    {
                        problems.Add(new ShapeProblem(index, ShapeProblemKind.NotInferable, null, null,
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
                    problems.Add(new ShapeProblem(index, ShapeProblemKind.Shape, error.Kind, layer.Kind == LayerKind.Model ? null : error.Argument,
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
                        current = result.Output;
                        currentIsInteger = result.OutputIsInteger;
                        outputText = ShapeText.Format(current);
                    }
                    else
                    {
                        current = null;
                    }
                    if (layer.Kind == LayerKind.Model && p.SubOutput is null && !shapesFailed)
                    {
                        current = null;
                        unknownReason = $"the output of '{layer.Name}' (model '{layer.TypeDisplay}', which defines its own forward) is unknown at compile time";
                    }
                    total = unchecked(total + parameters);
                }

                specs.Add(new LayerSpec(
                    layer.Name, layer.IsField, layer.Accessibility, layer.TypeName, layer.Kind, layer.AttributeText,
                    layer.Kind == LayerKind.Model ? layer.TypeDisplay : layer.Kind.ToString(),
                    new LayerArgs(resolvedIn, p.Out, p.Count, p.Bias, layer.Kind == LayerKind.Linear ? layer.TiedTo : null, p.Own),
                    outputText, parameters));
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

            return new Shapes { Layers = specs, Output = shapesFailed ? null : current, OutputIsInteger = currentIsInteger, Failed = shapesFailed, Parameters = total, Problems = problems };
        }

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
