namespace ModelDsl.Runtime.Quantization;

/// <summary>
/// PyTorch's dynamic-quantisation arithmetic (SEMANTICS.md §2): the default qint8 weight observer, the per-call
/// activation parameters with <c>reduce_range</c>, and the int8 kernel that carries out the product.
/// </summary>
internal static class QuantizationRules
{
    /// <summary>
    /// What every int8 layer (<see cref="DynamicQuantizedLinear"/>, the <see cref="StaticQuantizedLayer"/>s) checks of its
    /// input before running: not null, float32, on the CPU (its kernels are CPU kernels).
    /// </summary>
    public static void CheckInput(Tensor input, string layer)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.dtype != ScalarType.Float32)
            throw new ArgumentException($"{layer} takes float32 input, not {input.dtype}.", nameof(input));
        if (input.device_type != DeviceType.CPU)
            throw new NotSupportedException($"{layer} runs on the CPU (its int8 kernels are CPU kernels); the input is on {input.device}.");
    }

    /// <summary><c>torch.finfo(torch.float32).eps</c>, the floor of a weight scale (an all-zero weight gets it).</summary>
    public const float WeightScaleFloor = 1.1920929e-07f;

    /// <summary><c>SMALL_SCALE_THRESHOLD</c> of <c>ChooseQuantizationParams</c>.</summary>
    private const float SmallScaleThreshold = 6.1e-5f;

    /// <summary>
    /// The default dynamic qint8 weight observer (<c>MinMaxObserver</c>, per-tensor symmetric, range [-128, 127],
    /// no reduce_range): <c>scale = max(-min(w_min, 0), max(w_max, 0)) / 127.5</c> in float32, floored at
    /// <see cref="WeightScaleFloor"/>; zero point 0; <c>q = clamp(nearbyint(w · fl32(1/scale)), -128, 127)</c>.
    /// </summary>
    public static (Tensor Q, float Scale) QuantizeWeight(Tensor weight)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var w = weight.detach().to(ScalarType.Float32);
        float min = Math.Min(w.min().item<float>(), 0f);
        float max = Math.Max(w.max().item<float>(), 0f);
        float scale = Math.Max(-min, max) / 127.5f;
        scale = Math.Max(scale, WeightScaleFloor);
        float inverse = 1.0f / scale;
        var q = w.mul(inverse).round_().clamp_(-128, 127).to(ScalarType.Int8).contiguous();
        return (q.MoveToOuterDisposeScope(), scale);
    }

    /// <summary>
    /// <c>quant_utils::ChooseQuantizationParams(min, max, 0, 255, preserve_sparsity=false, reduce_range=true)</c>:
    /// quint8 restricted to [0, 127] so that u8·s8 pair sums fit in int16 (vpmaddubsw). The interval is widened to
    /// contain 0; the scale is computed in double and used as float32; a scale of 0 (or with an infinite
    /// reciprocal) becomes 0.1, one below 6.1e-5 is raised to it; the zero point comes from the end with the smaller
    /// error and is rounded half to even.
    /// </summary>
    public static (float Scale, int ZeroPoint) ChooseActivationQParams(float min, float max)
    {
        const int qmin = 0, qmax = 127;
        min = Math.Min(min, 0f);
        max = Math.Max(max, 0f);
        double scale = ((double)max - min) / (qmax - qmin);
        if ((float)scale == 0f || float.IsInfinity(1f / (float)scale))
            scale = 0.1;
        if (scale < SmallScaleThreshold)
        {
            float original = (float)scale;
            scale = SmallScaleThreshold;
            if (min == 0f)
                max = SmallScaleThreshold * (qmax - qmin);
            else if (max == 0f)
                min = -SmallScaleThreshold * (qmax - qmin);
            else
            {
                float amplifier = SmallScaleThreshold / original;
                min *= amplifier;
                max *= amplifier;
            }
        }

        double fromMin = qmin - min / scale;
        double fromMax = qmax - max / scale;
        double errorMin = Math.Abs(qmin) - Math.Abs(min / scale);
        double errorMax = Math.Abs(qmax) - Math.Abs(max / scale);
        double initial = errorMin < errorMax ? fromMin : fromMax;
        int zeroPoint = initial < qmin ? qmin : initial > qmax ? qmax : (int)Math.Round(initial, MidpointRounding.ToEven);
        return ((float)scale, zeroPoint);
    }

    private static readonly Lazy<jit.CompilationUnit> Kernels = new(() => jit.compile(KernelSource));

    // TorchScript because TorchSharp 0.107 does not bind aten::_int_mm. A TorchScript compile error aborts the
    // process (an uncaught C++ exception), so only this fixed, tested source is ever compiled.
    private const string KernelSource = @"
def int_mm(a: Tensor, b: Tensor) -> Tensor:
    return torch._int_mm(a, b)
";

    /// <summary>
    /// <c>torch._int_mm</c>: int8 [m, k] × int8 [k, n] → int32 [m, n], exact (int32 accumulation), on libtorch's
    /// oneDNN int8 GEMM. <paramref name="b"/> is best the transposed view of a contiguous [n, k] weight.
    /// </summary>
    public static Tensor IntMM(Tensor a, Tensor b)
    {
        // With one input feature, the transposed [n, 1] weight is a [1, n] view with strides (1, 1), which oneDNN's
        // int8 GEMM reads with the wrong leading dimension (garbage sums; a 1-feature LSTM input showed it). The
        // product is then an outer product: exact in int32 as a broadcast multiply.
        if (a.shape[1] == 1)
        {
            using var a32 = a.to(ScalarType.Int32);
            using var b32 = b.to(ScalarType.Int32);
            return a32.mul(b32);
        }
        return Kernels.Value.invoke<Tensor>("int_mm", a, b);
    }
}
