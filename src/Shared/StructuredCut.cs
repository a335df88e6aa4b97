using System.Collections.Generic;

// Linked into the generator (OptimizationParser checks a [Prune(PruneMethod.Structured)] cut and counts the parameters
// it leaves) and the runtime (OptimizationPipeline finds the layers it rewrites, OptimizedLayers the ones a file may
// show smaller), so the layers the compiler allowed are the layers the runtime cuts.
namespace ModelDsl.Shapes
{
    /// <summary>One layer after a structured cut's target, as the consumer walk sees it.</summary>
    /// <param name="Kind">The layer kind; null for a module that is none of the DSL's kinds (it stops the walk).</param>
    /// <param name="Groups">A convolution's groups (a grouped convolution cannot consume a cut).</param>
    /// <param name="FlattensChannels">A Flatten over (C, H, W): <c>Flatten(1, -1)</c>.</param>
    internal readonly record struct CutLayer(LayerKind? Kind, long Groups = 1, bool FlattensChannels = false);

    /// <summary>
    /// Where a structured cut's outputs go, as indices into the layers after the target: the BatchNorm2d that shrinks
    /// with a convolution (or -1), whether a Flatten turns each channel into a run of H·W features, and the Linear or
    /// Conv2d that consumes them (or -1). When there is no consumer, <see cref="Blocker"/> is the layer that stops
    /// the cut, or -1 when no layer with weights follows.
    /// </summary>
    internal readonly record struct CutPath(int Norm, bool Flattened, int Consumer, int Blocker);

    /// <summary>The one walk from a structured cut's target to the layer that consumes its outputs.</summary>
    internal static class StructuredCut
    {
        /// <summary>
        /// Walks <paramref name="after"/> (the layers after a <paramref name="producer"/> in forward order): channels
        /// pass through the kinds whose descriptor says so (<see cref="LayerKind.ChannelsPassThrough"/>: activations,
        /// pooling, dropout); one BatchNorm2d right after a convolution shrinks with it; one
        /// <c>Flatten(1, -1)</c> after a convolution makes each channel a run of inputs of a Linear; the next Linear
        /// (after a Linear, or a flattened convolution) or ungrouped Conv2d (after a convolution) consumes them.
        /// Anything else stops the cut.
        /// </summary>
        public static CutPath Walk(LayerKind producer, IReadOnlyList<CutLayer> after)
        {
            int norm = -1;
            bool flattened = false;
            bool conv = producer == LayerKind.Conv2d;
            for (int i = 0; i < after.Count; i++)
            {
                var layer = after[i];
                if (layer.Kind is { ChannelsPassThrough: true }) continue;
                if (layer.Kind == LayerKind.BatchNorm2d && conv && !flattened && norm < 0)
                {
                    norm = i;
                    continue;
                }
                if (layer.Kind == LayerKind.Flatten && conv && !flattened && layer.FlattensChannels)
                {
                    flattened = true;
                    continue;
                }
                bool consumes = layer.Kind == LayerKind.Linear && (!conv || flattened)
                             || layer.Kind == LayerKind.Conv2d && conv && !flattened && layer.Groups == 1;
                return consumes ? new CutPath(norm, flattened, i, -1) : new CutPath(norm, flattened, -1, i);
            }
            return new CutPath(norm, flattened, -1, -1);
        }
    }
}
