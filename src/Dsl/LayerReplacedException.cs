namespace ModelDsl
{
    /// <summary>
    /// Thrown by a generated model's typed layer property when the layer's slot holds a module of another type: an
    /// optimisation pass (<c>[Quantize]</c> puts a <c>DynamicQuantizedLinear</c> where a <c>Linear</c> was) or a
    /// <c>ReplaceLayer</c> call put it there. <c>GetLayer(name)</c> returns whatever the slot holds; a hand-written
    /// <c>forward</c> that runs its layers through <c>GetLayer(nameof(Layer)).call(x)</c> works with any replacement.
    /// </summary>
    public sealed class LayerReplacedException : InvalidOperationException
    {
        /// <summary>Creates the exception for the layer <paramref name="layer"/> of the declared type <paramref name="declared"/>.</summary>
        public LayerReplacedException(string layer, string? held, string declared)
            : base($"'{layer}' now holds a {held ?? "null"} (an optimisation pass or ReplaceLayer put it there), not the {declared} " +
                $"its typed property returns; run the layer through its slot instead: GetLayer(nameof({layer})).call(x)")
        {
            Layer = layer;
        }

        /// <summary>The layer's name (its property name).</summary>
        public string Layer { get; }
    }
}
