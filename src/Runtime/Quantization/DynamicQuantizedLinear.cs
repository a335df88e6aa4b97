using System.Runtime.InteropServices;
using TorchSharp.Modules;
using TorchSharp.Utils;

namespace ModelDsl.Runtime.Quantization;

/// <summary>
/// A quantised replacement for <see cref="Linear"/>, for inference: <c>torch.ao.nn.quantized.dynamic.Linear</c>.
/// It has no parameters; its state is the buffers <c>weight</c> (int8, or float16 in
/// <see cref="QuantizeMode.Float16"/>), <c>weight_scale</c> (int8 modes), <c>bias</c> (float32, if any) and
/// <c>quantize_mode</c>, which is what <c>state_dict</c>, <c>save</c> and <c>load</c> carry.
/// </summary>
/// <remarks>
/// <para>
/// <see cref="QuantizeMode.DynamicInt8"/> reproduces <c>quantize_dynamic</c> on the onednn engine: per call, one
/// min/max over the whole input chooses a uint8 scale and zero point with <c>reduce_range</c> (values 0..127); the
/// exact int32 sums <c>Σ (qa - zero_point) · qw</c> come from <see cref="Int8Gemm"/> (AVX-VNNI or AVX2, chosen from
/// the CPU; <c>torch._int_mm</c> where neither is present), are scaled by <c>a_scale · w_scale</c> in float32 and the
/// float bias added. Every path gives the same bits.
/// </para>
/// <para>
/// <see cref="QuantizeMode.WeightOnlyInt8"/> keeps the same int8 weight and dequantises it (<c>q · scale</c>) for
/// each call, computing in float32: the model is 4x smaller in memory and on disk, not faster.
/// <see cref="QuantizeMode.Float16"/> stores the weight as float16 (saturated to ±65504) and computes in float32.
/// </para>
/// </remarks>
public sealed class DynamicQuantizedLinear : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")]
    private readonly Tensor _weight;
    [ComponentName(Name = "weight_scale")]
    private readonly Tensor? _weightScale;
    [ComponentName(Name = "bias")]
    private readonly Tensor? _bias;
    [ComponentName(Name = "quantize_mode")]
    private readonly Tensor _mode;

    /// <summary>Quantises <paramref name="source"/>'s weight; <paramref name="source"/> is not changed.</summary>
    /// <param name="source">A float32 <see cref="Linear"/>.</param>
    /// <param name="mode">How to quantise it.</param>
    public DynamicQuantizedLinear(Linear source, QuantizeMode mode) : base(nameof(DynamicQuantizedLinear))
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source.weight.dtype != ScalarType.Float32)
            throw new ArgumentException($"Quantize.Dynamic converts float32 Linear layers; this one is {source.weight.dtype}.", nameof(source));
        Quantize.CheckDynamic(mode);

        Mode = mode;
        in_features = source.in_features;
        out_features = source.out_features;
        using (no_grad())
        using (NewDisposeScope()) // the temporaries; the buffers below are detached from it
        {
            if (mode == QuantizeMode.Float16)
            {
                // quant_utils::HandleWeightsSaturation: weights beyond the float16 range saturate to ±65504.
                _weight = source.weight.detach().clamp(-65504, 65504).to(ScalarType.Float16).DetachFromDisposeScope();
            }
            else
            {
                var (q, scale) = QuantizationRules.QuantizeWeight(source.weight);
                _weight = q.DetachFromDisposeScope();
                _weightScale = tensor(scale).DetachFromDisposeScope();
            }
            _bias = source.bias?.detach().clone().DetachFromDisposeScope();
        }
        _mode = tensor((long)mode).DetachFromDisposeScope();

        register_buffer("weight", _weight);
        if (_weightScale is not null) register_buffer("weight_scale", _weightScale);
        if (_bias is not null) register_buffer("bias", _bias);
        register_buffer("quantize_mode", _mode);
        RegisterComponents();
        eval();
    }

    /// <summary>Tests switch this off to check the torch-ops path (used for inputs over 2 GiB) against the same vectors.</summary>
    internal static bool UseManagedKernels { get; set; } = true;

    /// <summary>The quantisation mode.</summary>
    public QuantizeMode Mode { get; }

    /// <summary>Size of each input sample.</summary>
    public long in_features { get; }

    /// <summary>Size of each output sample.</summary>
    public long out_features { get; }

    /// <summary>The stored weight, [out, in]: int8 values (scale <see cref="WeightScale"/>, zero point 0) or float16.</summary>
    public Tensor weight => _weight;

    /// <summary>The weight's scale (int8 modes); 1 for <see cref="QuantizeMode.Float16"/>.</summary>
    public float WeightScale => _weightScale?.item<float>() ?? 1f;

    /// <summary>The float32 bias, or <c>null</c>.</summary>
    public Tensor? bias => _bias;

    /// <summary>Computes <c>x Wᵀ + b</c> with the quantised weight; <c>(*, in) → (*, out)</c>, float32.</summary>
    /// <param name="input">A float32 tensor whose last dimension is <see cref="in_features"/>.</param>
    public override Tensor forward(Tensor input)
    {
        QuantizationRules.CheckInput(input, nameof(DynamicQuantizedLinear));
        var shape = input.shape;
        if (shape.Length == 0 || shape[^1] != in_features)
            throw new ArgumentException(
                $"mat1 and mat2 shapes cannot be multiplied: the input's last dimension is {(shape.Length == 0 ? 0 : shape[^1])}, but this layer takes {in_features} features.",
                nameof(input));

        switch (Mode)
        {
            case QuantizeMode.Float16:
            {
                using var w = _weight.to(ScalarType.Float32);
                return nn.functional.linear(input, w, _bias);
            }
            case QuantizeMode.WeightOnlyInt8:
            {
                using var w = _weight.to(ScalarType.Float32);
                w.mul_(WeightScale);
                return nn.functional.linear(input, w, _bias);
            }
            default:
                return ForwardDynamicInt8(input, shape);
        }
    }

    private Tensor ForwardDynamicInt8(Tensor input, long[] shape)
    {
        var outputShape = (long[])shape.Clone();
        outputShape[^1] = out_features;
        long count = shape.Aggregate(1L, (a, b) => a * b), rows = count / in_features;
        if (count == 0)
            return zeros(outputShape, dtype: ScalarType.Float32);

        // Spans address at most 2 GiB; beyond that the same arithmetic runs as torch ops.
        bool managed = UseManagedKernels && count * sizeof(float) <= int.MaxValue && rows * out_features * sizeof(float) <= int.MaxValue;
        var kernel = Int8Gemm.Current;
        if (managed && kernel != Int8Kernel.Torch && in_features * out_features <= int.MaxValue && _weight.is_contiguous())
        {
            if (input.is_contiguous())
                return ForwardManaged(input, outputShape, (int)rows, kernel);
            using var contiguous = input.contiguous();
            return ForwardManaged(contiguous, outputShape, (int)rows, kernel);
        }
        return ForwardThroughTorch(input, outputShape, managed);
    }

    /// <summary>
    /// The int8 product with <see cref="Int8Gemm"/> on a contiguous input, which is [rows, in] in memory whatever its
    /// shape: no reshape, no dispose scope, one output tensor — at one row per call (cached generation) those per-call
    /// costs are most of the time.
    /// </summary>
    private Tensor ForwardManaged(Tensor input, long[] outputShape, int rows, Int8Kernel kernel)
    {
        var x = MemoryMarshal.Cast<byte, float>(input.bytes);
        var (min, max) = ActivationKernels.MinMax(x);
        var (aScale, zeroPoint) = QuantizationRules.ChooseActivationQParams(min, max);
        var y = empty(outputShape, dtype: ScalarType.Float32);
        // One managed pass quantises to uint8 (0..127); the int8 GEMM subtracts zero_point · Σ w itself and writes
        // scale · sum + bias straight into the output (docs/optimization.md, "The int8 kernel").
        var input8 = System.Buffers.ArrayPool<sbyte>.Shared.Rent(x.Length);
        try
        {
            var a = input8.AsSpan(0, x.Length);
            ActivationKernels.Quantize(x, (float)(1.0 / aScale), zeroPoint, 0, a);
            ReadOnlySpan<float> bias = _bias is null ? ReadOnlySpan<float>.Empty : MemoryMarshal.Cast<byte, float>(_bias.bytes);
            Int8Gemm.Linear(
                MemoryMarshal.Cast<sbyte, byte>(a), MemoryMarshal.Cast<byte, sbyte>(_weight.bytes), rows, (int)out_features,
                (int)in_features, zeroPoint, OutputScale(aScale), bias, MemoryMarshal.Cast<byte, float>(y.bytes), kernel, get_num_threads());
        }
        finally
        {
            System.Buffers.ArrayPool<sbyte>.Shared.Return(input8);
        }
        return y;
    }

    /// <summary><c>a_scale · w_scale</c> in float32, the weight's scale read from its buffer's memory (item() costs several native calls).</summary>
    private float OutputScale(double aScale) => (float)(aScale * MemoryMarshal.Read<float>(_weightScale!.bytes));

    /// <summary>The same arithmetic through <c>torch._int_mm</c> (no AVX2, or past 2 GiB).</summary>
    private Tensor ForwardThroughTorch(Tensor input, long[] outputShape, bool managed)
    {
        using var scope = NewDisposeScope();
        var x = input.reshape(-1, in_features).contiguous();
        long rows = x.shape[0];
        float minValue, maxValue;
        if (managed)
        {
            (minValue, maxValue) = ActivationKernels.MinMax(MemoryMarshal.Cast<byte, float>(x.bytes));
        }
        else
        {
            var (min, max) = x.aminmax();
            minValue = min.item<float>();
            maxValue = max.item<float>();
        }
        var (aScale, zeroPoint) = QuantizationRules.ChooseActivationQParams(minValue, maxValue);
        float inverse = (float)(1.0 / aScale);
        float outScale = OutputScale(aScale);
        Tensor y;

        // qa = clamp(nearbyint(x · fl32(1/scale) + zp), 0, 127); with reduce_range, qa - zp fits in int8.
        Tensor a8;
        if (managed)
        {
            a8 = empty(rows, in_features, dtype: ScalarType.Int8);
            ActivationKernels.Quantize(MemoryMarshal.Cast<byte, float>(x.bytes), inverse, zeroPoint, zeroPoint, MemoryMarshal.Cast<byte, sbyte>(a8.bytes));
        }
        else
        {
            a8 = x.mul(inverse).add_(zeroPoint).round_().clamp_(0, 127).sub_(zeroPoint).to(ScalarType.Int8);
        }

        var accumulated = QuantizationRules.IntMM(a8, _weight.t()).contiguous();
        if (managed)
        {
            y = empty(rows, out_features, dtype: ScalarType.Float32);
            ReadOnlySpan<float> bias = _bias is null ? ReadOnlySpan<float>.Empty : MemoryMarshal.Cast<byte, float>(_bias.bytes);
            ActivationKernels.Dequantize(MemoryMarshal.Cast<byte, int>(accumulated.bytes), outScale, bias, (int)out_features, MemoryMarshal.Cast<byte, float>(y.bytes));
        }
        else
        {
            y = accumulated.to(ScalarType.Float32).mul_(outScale);
            if (_bias is not null)
                y.add_(_bias);
        }
        return y.reshape(outputShape).MoveToOuterDisposeScope();
    }
}
