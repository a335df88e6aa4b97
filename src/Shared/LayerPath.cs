// Linked into the generator (OptimizationParser resolves a [Prune] target through the composed models' layer tables)
// and the runtime (OptimizationPipeline and OptimizedLayers through the modules' ILayerHost), so a path names the same
// layers at compile time and at run time.
namespace ModelDsl.Shapes
{
    /// <summary>
    /// A pass target's path: a layer of the model (<c>"Stem"</c>), or a layer inside a composed model or repeated block,
    /// dotted as its state-dict prefix (<c>"Stage2.Conv1"</c>; a repeated block's copies by index, <c>"Stage1.0.Conv1"</c>,
    /// or <c>"Stage1.*.Conv1"</c> for every copy).
    /// </summary>
    internal static class LayerPath
    {
        /// <summary>The separator of a path's segments (PyTorch's state-dict names).</summary>
        public const char Separator = '.';

        /// <summary>A segment that stands for every layer of its scope that has the rest of the path: every copy of a repeated block.</summary>
        public const string Every = "*";

        /// <summary>
        /// The layers <paramref name="path"/> names, each with the scope that holds it and its path prefix (<c>""</c> at
        /// the model, <c>"Stage1.0."</c> in a copy). Null, with <paramref name="error"/> saying why after the path, when a
        /// segment names no layer or a segment before the last names a layer that holds none.
        /// </summary>
        /// <param name="root">The model.</param>
        /// <param name="path">The target as written.</param>
        /// <param name="names">A scope's layer names (a repeated block's: its copies' indices).</param>
        /// <param name="enter">The scope a layer opens — a composed model, a repeated block's copies — or null.</param>
        /// <param name="error">Why the path names nothing, after the path ("is not a layer of the model: ...").</param>
        public static List<(T Scope, string Prefix, string Name)>? Resolve<T>(T root, string path, Func<T, IReadOnlyList<string>> names,
            Func<T, string, T?> enter, out string error) where T : class
        {
            error = "";
            var segments = path.Split(Separator);
            var scopes = new List<(T Scope, string Prefix)> { (root, "") };
            for (int i = 0; i < segments.Length; i++)
            {
                string segment = segments[i];
                bool last = i == segments.Length - 1;
                var next = new List<(T Scope, string Prefix)>();
                foreach (var (scope, prefix) in scopes)
                {
                    var layers = names(scope);
                    if (segment == Every && !last)
                    {
                        foreach (var name in layers)
                            if (enter(scope, name) is { } inner) next.Add((inner, prefix + name + Separator));
                        continue;
                    }
                    if (!layers.Contains(segment, StringComparer.Ordinal))
                    {
                        error = prefix.Length == 0
                            ? $"is not a layer of the model (its layers: {string.Join(", ", layers)})"
                            : $"is not a layer of the model: '{prefix.TrimEnd(Separator)}' has no layer '{segment}' (its layers: {string.Join(", ", layers)})";
                        return null;
                    }
                    if (last) next.Add((scope, prefix));
                    else if (enter(scope, segment) is { } inner) next.Add((inner, prefix + segment + Separator));
                    else
                    {
                        error = $"is not a layer of the model: '{prefix}{segment}' is a layer, not a composed model or repeated block, so it has no layer '{segments[i + 1]}'";
                        return null;
                    }
                }
                if (next.Count == 0)
                {
                    error = $"is not a layer of the model: '{string.Join(Separator.ToString(), segments.Take(i))}' has no composed model or repeated block for '{Every}' to stand for";
                    return null;
                }
                scopes = next;
            }
            return scopes.Select(s => (s.Scope, s.Prefix, segments[segments.Length - 1])).ToList();
        }
    }
}
