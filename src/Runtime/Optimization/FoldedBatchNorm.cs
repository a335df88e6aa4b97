namespace ModelDsl.Runtime.Optimization
{
    /// <summary>
    /// What a BatchNorm's slot holds once the optimisation pipeline has folded it into the layer before it
    /// (<see cref="Fusion"/>): nothing to compute, its input is its output. Its one buffer, <c>folded</c>, marks the
    /// slot in <c>optimized.bin</c>, so the loader puts a <see cref="FoldedBatchNorm"/> back there
    /// (<see cref="OptimizedLayers"/>).
    /// </summary>
    public sealed class FoldedBatchNorm : nn.Module<Tensor, Tensor>
    {
        /// <summary>The buffer name that marks a folded BatchNorm in a model file.</summary>
        public const string MarkerName = "folded";

        /// <summary>A folded BatchNorm slot.</summary>
        public FoldedBatchNorm() : base(nameof(FoldedBatchNorm))
        {
            register_buffer(MarkerName, torch.ones(1, ScalarType.Int64));
        }

        /// <summary>Returns <paramref name="input"/> itself: the BatchNorm's work is in the layer before it.</summary>
        public override Tensor forward(Tensor input) => input;
    }
}
