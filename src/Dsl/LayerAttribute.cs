namespace ModelDsl
{
    /// <summary>
    /// Base class of the layer attributes. A layer attribute goes on a <c>partial</c> property of a
    /// <see cref="ModelAttribute">[Model]</see> class whose type is the matching TorchSharp module
    /// (<c>[Linear]</c> on a <c>TorchSharp.Modules.Linear</c>, and so on). Layers run in declaration order.
    /// </summary>
    [AttributeUsage(AttributeTargets.Property | AttributeTargets.Field, AllowMultiple = false, Inherited = false)]
    public abstract class LayerAttribute : Attribute
    {
        // Only the layer kinds the generator knows can exist: a user subclass would compile to nothing.
        private protected LayerAttribute() { }

        /// <summary>
        /// Graph models: the layer whose output this layer takes, written <c>nameof(Layer)</c>, instead of the previous
        /// layer's; <c>"input"</c> is the model input. It must name an earlier layer (no cycles, no forward references).
        /// Default: the previous layer (or the input, for the first).
        /// </summary>
        public string? From { get; set; }
    }
}
