namespace ModelDsl;

/// <summary>The <see cref="ILayerHost.Summary"/> of the runtime's own hosts (the Transformer layers), which have no compile-time one.</summary>
internal static class LayerHostSummary
{
    /// <summary>
    /// A summary of the host's slots: each slot's kind is its module's type name, its output shape unknown, and its
    /// sources are what <paramref name="sources"/> says it reads (a slot it omits reads the one before, as in a chain).
    /// </summary>
    public static ModelSummary Of(string model, ILayerHost host, System.Collections.Generic.IReadOnlyDictionary<string, string[]>? sources = null) =>
        new(model, "(B, T, C)", "Float32", host.LayerNames.Select(name =>
        {
            var module = (torch.nn.Module)host.GetLayer(name);
            long parameters = module.parameters().Sum(p => p.numel());
            return sources is not null && sources.TryGetValue(name, out var from)
                ? new LayerSummary(name, module.GetType().Name, "?", parameters, from)
                : new LayerSummary(name, module.GetType().Name, "?", parameters);
        }).ToArray());
}
