#if MODELDSL_GENERATOR
// Compiled into the generator too (its parsers read the properties by nameof), under its own namespace: the generator
// tests reference both assemblies.
namespace ModelDsl.Generators.Dsl
#else
namespace ModelDsl
#endif
{
    /// <summary>
    /// Pruning methods, named after <c>torch.nn.utils.prune</c>. The runtime executes them with
    /// <c>ModelDsl.Runtime.Pruning.Prune</c>; the DSL declares them with <c>[Prune]</c>.
    /// </summary>
    public enum PruneMethod
    {
        /// <summary><c>prune.l1_unstructured</c>: zero the weights of smallest absolute value.</summary>
        L1Unstructured = 0,
        /// <summary><c>prune.random_unstructured</c>: zero weights chosen at random.</summary>
        RandomUnstructured = 1,
        /// <summary><c>prune.ln_structured</c>: zero whole channels along a dimension, ranked by their Ln norm.</summary>
        LnStructured = 2,
        /// <summary><c>prune.random_structured</c>: zero whole channels along a dimension, chosen at random.</summary>
        RandomStructured = 3,
        /// <summary><c>prune.global_unstructured</c> with L1: one ranking of absolute values across all targets.</summary>
        GlobalL1Unstructured = 4,
        /// <summary>
        /// Removes whole output neurons (Linear) or channels (Conv2d, with the BatchNorm that follows) ranked by
        /// their L2 norm, and shrinks the layer that consumes them, so the model really gets smaller.
        /// </summary>
        Structured = 5,
    }

    /// <summary>
    /// Post-training quantisation modes: for <c>Linear</c> layers after <c>torch.ao.quantization.quantize_dynamic</c>,
    /// and <see cref="StaticInt8"/> for <c>Conv2d</c> and <c>Linear</c> after eager-mode static quantisation
    /// (<c>prepare</c>, calibration, <c>convert</c>).
    /// </summary>
    public enum QuantizeMode
    {
        /// <summary>
        /// int8 weights (per-tensor symmetric), activations quantised per call to uint8 with PyTorch's
        /// <c>reduce_range</c> rule, int8 matrix products with int32 accumulation.
        /// </summary>
        DynamicInt8 = 0,
        /// <summary>int8 weights stored (as <see cref="DynamicInt8"/>), dequantised to float32 for each call.</summary>
        WeightOnlyInt8 = 1,
        /// <summary>float16 weights stored, computed in float32 (<c>quantize_dynamic(dtype=torch.float16)</c>).</summary>
        Float16 = 2,
        /// <summary>
        /// Post-training static quantisation (PyTorch 1.13's eager <c>prepare</c> / calibrate / <c>convert</c> with
        /// <c>get_default_qconfig("x86")</c>): Conv2d (+BatchNorm2d) (+ReLU) and Linear (+ReLU) fused, per-channel
        /// symmetric int8 weights, activation scales and zero points fixed by histogram observers over
        /// <c>CalibrationBatches</c> batches of the training data, quantised activations flowing between consecutive
        /// quantised layers.
        /// </summary>
        StaticInt8 = 3,
    }
}
