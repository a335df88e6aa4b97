using System.Linq;
using TorchSharp;

namespace ModelDsl;

/// <summary>The <see cref="ILayerHost.Summary"/> of the runtime's own hosts (the Transformer layers), which have no compile-time one.</summary>
internal static class LayerHostSummary
{
    /// <summary>A chain summary: each slot reads the one before, its kind its module's type name, its output shape unknown.</summary>
    public static ModelSummary Chain(string model, ILayerHost host) =>
        new(model, "(B, T, C)", "Float32", host.LayerNames.Select(name =>
        {
            var module = (torch.nn.Module)host.GetLayer(name);
            return new LayerSummary(name, module.GetType().Name, "?", module.parameters().Sum(p => p.numel()));
        }).ToArray());
}
