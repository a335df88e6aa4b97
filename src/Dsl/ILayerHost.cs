namespace ModelDsl
{
    /// <summary>
    /// Implemented by every generated model: its layers by name, and the one checked path to swap a layer
    /// (what pruning and quantisation passes use). The members are typed <see cref="object"/> because this
    /// assembly has no dependencies; generated models also have typed <c>GetLayer</c>/<c>ReplaceLayer</c>
    /// methods over TorchSharp modules.
    /// </summary>
    public interface ILayerHost
    {
        /// <summary>The layer names in declaration order (also the registered sub-module names).</summary>
        IReadOnlyList<string> LayerNames { get; }

        /// <summary>
        /// Whether <c>forward</c> is the generated one, which runs whatever each layer slot holds. A hand-written
        /// <c>forward</c> may read the typed properties, which hold only their declared type (replacing a layer with
        /// another type then makes them throw <see cref="LayerReplacedException"/>), or the slots through
        /// <c>GetLayer(nameof(Layer))</c>, which the compiler requires for the layers a declared pass replaces (MD0016).
        /// </summary>
        bool ForwardIsGenerated { get; }

        /// <summary>The module the named layer holds now.</summary>
        object GetLayer(string name);

        /// <summary>Replaces the named layer with a <c>Module&lt;Tensor, Tensor&gt;</c>; returns the module it held.</summary>
        object ReplaceLayer(string name, object replacement);

        /// <summary>
        /// The model's compile-time summary: its layers with their sources (the graph <c>forward</c> runs), output
        /// shapes and parameter counts, so run-time passes can walk the graph.
        /// </summary>
        ModelSummary Summary { get; }
    }
}
