using System.Buffers;
using System.Runtime.InteropServices;
using System.Threading;
using TorchSharp.Modules;
using TorchSharp.Utils;

namespace ModelDsl.Runtime.Quantization;

/// <summary>
/// A Conv2d or Linear after static int8 quantisation (<see cref="QuantizeMode.StaticInt8"/>): PyTorch's
/// <c>torch.ao.nn.quantized.Conv2d</c> / <c>ConvReLU2d</c> / <c>Linear</c> / <c>LinearReLU</c>, with a QuantStub in front
/// (the input's scale and zero point, fixed at calibration) and a DeQuantStub behind (the output's).
/// </summary>
/// <remarks>
/// <para>
/// State (the buffers <c>state_dict</c>, <c>save</c> and <c>load</c> carry): <c>weight</c> (int8, per-channel symmetric,
/// zero points 0), <c>weight_scales</c> (float32, one per output channel), <c>bias</c> (float32, if any),
/// <c>input_scale</c>/<c>input_zero_point</c>, <c>output_scale</c>/<c>output_zero_point</c> (quint8), <c>fused_relu</c>
/// and <c>quantize_mode</c> (3, <see cref="QuantizeMode.StaticInt8"/>).
/// </para>
/// <para>
/// A call: the float input is quantised with the input's parameters (<c>clamp(nearbyint(x / s) + zp, 0, 255)</c>); the
/// int8 product's exact int32 sums <c>Σ (q − zp) · w</c> come from <see cref="Int8Gemm"/>; each output is
/// <c>sum · s_in · s_w[c] + bias[c]</c>, after the fused ReLU, quantised with the output's parameters and handed on as
/// its float value <c>(q − zp) · s</c>. The next quantised layer, which shares those parameters (<see cref="StaticQuantizer"/>),
/// quantises it back to the same q, so the values between quantised layers are PyTorch's quantised tensors held as floats
/// (MaxPool2d, Flatten, Dropout and ReLU commute with that).
/// </para>
/// </remarks>
public abstract class StaticQuantizedLayer : nn.Module<Tensor, Tensor>
{
    /// <summary>The buffer that tells a static int8 layer's weights in a model file (it holds 3).</summary>
    internal const string ModeKey = "quantize_mode";

    [ComponentName(Name = "weight")] private readonly Tensor _weight;
    [ComponentName(Name = "weight_scales")] private readonly Tensor _weightScales;
    [ComponentName(Name = "bias")] private readonly Tensor? _bias;
    [ComponentName(Name = "input_scale")] private readonly Tensor _inputScale;
    [ComponentName(Name = "input_zero_point")] private readonly Tensor _inputZeroPoint;
    [ComponentName(Name = "output_scale")] private readonly Tensor _outputScale;
    [ComponentName(Name = "output_zero_point")] private readonly Tensor _outputZeroPoint;
    [ComponentName(Name = "fused_relu")] private readonly Tensor _fusedRelu;
    [ComponentName(Name = "quantize_mode")] private readonly Tensor _mode;
    private sbyte[]? _prepared; // GemmWeight's padded copy of the weight

    private protected StaticQuantizedLayer(string name, Tensor weight, bool hasBias, Tensor? floatBias, StaticQParams qparams) : base(name)
    {
        using (no_grad())
        using (NewDisposeScope()) // the temporaries; the buffers below are detached from it
        {
            var (q, scales) = PerChannelWeight(weight);
            _weight = q.DetachFromDisposeScope();
            _weightScales = scales.DetachFromDisposeScope();
            _bias = hasBias ? (floatBias?.detach().to(ScalarType.Float32).clone() ?? zeros(weight.shape[0])).DetachFromDisposeScope() : null;
        }
        _inputScale = tensor(qparams.InputScale).DetachFromDisposeScope();
        _inputZeroPoint = tensor((long)qparams.InputZeroPoint).DetachFromDisposeScope();
        _outputScale = tensor(qparams.OutputScale).DetachFromDisposeScope();
        _outputZeroPoint = tensor((long)qparams.OutputZeroPoint).DetachFromDisposeScope();
        _fusedRelu = tensor(qparams.FusedRelu ? 1L : 0L).DetachFromDisposeScope();
        _mode = tensor((long)QuantizeMode.StaticInt8).DetachFromDisposeScope();
        register_buffer("weight", _weight);
        register_buffer("weight_scales", _weightScales);
        if (_bias is not null) register_buffer("bias", _bias);
        register_buffer("input_scale", _inputScale);
        register_buffer("input_zero_point", _inputZeroPoint);
        register_buffer("output_scale", _outputScale);
        register_buffer("output_zero_point", _outputZeroPoint);
        register_buffer("fused_relu", _fusedRelu);
        register_buffer(ModeKey, _mode);
        RegisterComponents();
        eval();
        int columns = (int)_weight.shape[0];
        if (columns > 0) GemmWeight(columns, StaticKernels.Padded((int)(_weight.numel() / columns))); // prepared once, at quantisation
    }

    /// <summary>The int8 weight in the float layer's layout ([out, in] or [out, in, kH, kW]).</summary>
    public Tensor weight => _weight;
    /// <summary>The weight's scale per output channel.</summary>
    public Tensor weight_scales => _weightScales;
    /// <summary>The float32 bias, or <c>null</c>.</summary>
    public Tensor? bias => _bias;
    /// <summary>The input's quantisation parameters (the QuantStub's, or the previous quantised layer's output).</summary>
    public (float Scale, int ZeroPoint) InputQParams => (Read<float>(_inputScale), (int)Read<long>(_inputZeroPoint));
    /// <summary>The output's quantisation parameters.</summary>
    public (float Scale, int ZeroPoint) OutputQParams => (Read<float>(_outputScale), (int)Read<long>(_outputZeroPoint));
    /// <summary>Whether a ReLU was fused in (<c>ConvReLU2d</c>, <c>LinearReLU</c>).</summary>
    public bool FusedRelu => Read<long>(_fusedRelu) != 0;

    // Read from the buffers at each call (a load replaces their values in place), straight from their memory: item()
    // costs a few native calls each, which showed on layers as small as the Digits CNN's output layer.
    private static T Read<T>(Tensor scalar) where T : struct => MemoryMarshal.Read<T>(scalar.bytes);

    /// <summary>
    /// <c>default_per_channel_weight_observer</c> (per-channel symmetric qint8, range [-128, 127]):
    /// <c>scale[c] = max(−min(w_c, 0), max(w_c, 0)) / 127.5</c> in float32, floored at float32's eps; zero point 0;
    /// <c>q = clamp(nearbyint(w · fl32(1/scale[c])), −128, 127)</c>.
    /// </summary>
    internal static (Tensor Q, Tensor Scales) PerChannelWeight(Tensor weight)
    {
        using var scope = NewDisposeScope();
        var w = weight.detach().to(ScalarType.Float32).contiguous();
        var rows = w.reshape(w.shape[0], -1);
        var (low, high) = rows.aminmax(1);
        var maxPos = maximum(low.clamp(max: 0).neg(), high.clamp(min: 0));
        var scales = (maxPos / 127.5).clamp(min: QuantizationRules.WeightScaleFloor);
        var inverse = scales.reciprocal().reshape(-1, 1);
        var q = rows.mul(inverse).round_().clamp_(-128, 127).to(ScalarType.Int8).reshape(w.shape).contiguous();
        return (q.MoveToOuterDisposeScope(), scales.contiguous().MoveToOuterDisposeScope());
    }

    /// <summary>Checks the input and runs the layer.</summary>
    public override Tensor forward(Tensor input)
    {
        QuantizationRules.CheckInput(input, GetType().Name);
        return Run(input);
    }

    private protected abstract Tensor Run(Tensor input);

    /// <summary>
    /// The int8 product of quantised rows <paramref name="a"/> [rows, k] (uint8, the input's zero point where padded)
    /// with the weight as [out, k], into <paramref name="y"/> [rows, out] as floats <c>sum · s_in · s_w[c] + bias[c]</c>.
    /// </summary>
    private protected void Product(ReadOnlySpan<byte> a, int rows, int k, float inScale, int inZero, bool over127, Span<float> y)
    {
        int columns = (int)_weight.shape[0];
        var weightScales = MemoryMarshal.Cast<byte, float>(_weightScales.bytes);
        Span<float> scales = columns <= 1024 ? stackalloc float[columns] : new float[columns];
        for (int c = 0; c < columns; c++) scales[c] = (float)((double)inScale * weightScales[c]);
        ReadOnlySpan<float> bias = _bias is null ? ReadOnlySpan<float>.Empty : MemoryMarshal.Cast<byte, float>(_bias.bytes);
        // uint8 inputs above 127 (values past the calibrated range) would saturate vpmaddubsw's int16 pair sums on the
        // AVX2 path: those calls split each byte there (exact); VNNI and the scalar kernel sum them exactly as they are.
        var kernel = Int8Gemm.Current;
        if (kernel == Int8Kernel.Torch) kernel = Int8Kernel.Scalar;
        if (over127 && kernel == Int8Kernel.Avx2) kernel = Int8Kernel.Avx2FullRange;
        Int8Gemm.Linear(a, GemmWeight(columns, k), rows, columns, k, inZero, scales, bias, y, kernel, get_num_threads());
    }

    /// <summary>
    /// The weight as the GEMM takes it, [out, k] with each row padded with zeros to <paramref name="k"/> bytes (a whole
    /// number of 32-byte vectors, as the input rows are). Prepared at quantisation; a load that rewrote the weight in
    /// place (the stored buffer is what <c>load</c> and <c>copy_</c> write) is seen by a read-only comparison and the
    /// copy prepared again.
    /// </summary>
    private ReadOnlySpan<sbyte> GemmWeight(int columns, int k)
    {
        var w = MemoryMarshal.Cast<byte, sbyte>(_weight.bytes);
        int stored = columns == 0 ? k : w.Length / columns;
        if (stored == k) return w;
        var prepared = Volatile.Read(ref _prepared);
        if (prepared is null || prepared.Length != columns * k || !Holds(prepared, w, columns, stored, k))
        {
            prepared = Pad(w, columns, stored, k);
            Volatile.Write(ref _prepared, prepared); // a new array: a call on another thread keeps the one it read
        }
        return prepared;
    }

    private static bool Holds(sbyte[] prepared, ReadOnlySpan<sbyte> w, int columns, int stored, int k)
    {
        for (int c = 0; c < columns; c++)
            if (!w.Slice(c * stored, stored).SequenceEqual(prepared.AsSpan(c * k, stored)))
                return false;
        return true;
    }

    private static sbyte[] Pad(ReadOnlySpan<sbyte> w, int columns, int stored, int k)
    {
        var padded = new sbyte[columns * k];
        for (int c = 0; c < columns; c++) w.Slice(c * stored, stored).CopyTo(padded.AsSpan(c * k));
        return padded;
    }

    /// <summary>The output's quantisation, as the float value each quantised output stands for.</summary>
    private protected (float Inverse, float ZeroPoint, float Scale, float Low) OutputGrid()
    {
        var (scale, zero) = OutputQParams;
        // A fused ReLU clamps the quantised output at its zero point (a real zero).
        return (1f / scale, zero, scale, FusedRelu ? zero : 0f);
    }
}

/// <summary>The quantisation parameters a static layer is built with (from its observers).</summary>
public readonly record struct StaticQParams(float InputScale, int InputZeroPoint, float OutputScale, int OutputZeroPoint, bool FusedRelu);

/// <summary>A Linear after static int8 quantisation (<c>torch.ao.nn.quantized.Linear</c> / <c>LinearReLU</c>); see <see cref="StaticQuantizedLayer"/>.</summary>
public sealed class StaticQuantizedLinear : StaticQuantizedLayer
{
    /// <summary>Quantises <paramref name="source"/>'s weight with the given activation parameters; the source is not changed.</summary>
    public StaticQuantizedLinear(Linear source, StaticQParams qparams)
        : base(nameof(StaticQuantizedLinear), (source ?? throw new ArgumentNullException(nameof(source))).weight, source.bias is not null, source.bias, qparams)
    {
        in_features = source.in_features;
        out_features = source.out_features;
    }

    /// <summary>Size of each input sample.</summary>
    public long in_features { get; }
    /// <summary>Size of each output sample.</summary>
    public long out_features { get; }

    private protected override Tensor Run(Tensor input)
    {
        if (input.dim() == 0 || input.shape[^1] != in_features)
            throw new ArgumentException($"mat1 and mat2 shapes cannot be multiplied: the input's last dimension is {(input.dim() == 0 ? 0 : input.shape[^1])}, but this layer takes {in_features} features.", nameof(input));
        var shape = (long[])input.shape.Clone();
        shape[^1] = out_features;
        if (input.numel() == 0) return zeros(shape);
        using var scope = NewDisposeScope();
        var x = input.reshape(-1, in_features).contiguous();
        int rows = checked((int)x.shape[0]), k = (int)in_features;
        int kp = StaticKernels.Padded(k);
        var a = ArrayPool<byte>.Shared.Rent(checked(rows * kp));
        try
        {
            var (inScale, inZero) = InputQParams;
            bool over127 = StaticKernels.QuantizeRows(MemoryMarshal.Cast<byte, float>(x.bytes), rows, k, kp, 1f / inScale, inZero, a);
            var y = empty(rows, out_features);
            var ys = MemoryMarshal.Cast<byte, float>(y.bytes);
            Product(a.AsSpan(0, rows * kp), rows, kp, inScale, inZero, over127, ys);
            var (inverse, zero, scale, low) = OutputGrid();
            StaticKernels.Requantize(ys, inverse, zero, scale, low);
            return y.reshape(shape).MoveToOuterDisposeScope();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(a);
        }
    }
}

/// <summary>A Conv2d after static int8 quantisation (<c>torch.ao.nn.quantized.Conv2d</c> / <c>ConvReLU2d</c>), as im2col and the int8 GEMM; see <see cref="StaticQuantizedLayer"/>.</summary>
public sealed class StaticQuantizedConv2d : StaticQuantizedLayer
{
    private readonly long[] _kernel, _stride, _padding, _dilation;

    /// <summary>Quantises <paramref name="source"/>'s weight with the given activation parameters; the source is not changed.</summary>
    /// <exception cref="NotSupportedException">A grouped convolution, or padding other than zeros.</exception>
    public StaticQuantizedConv2d(Conv2d source, StaticQParams qparams)
        : base(nameof(StaticQuantizedConv2d), (source ?? throw new ArgumentNullException(nameof(source))).weight, source.bias is not null, source.bias, qparams)
    {
        if (source.groups != 1)
            throw new NotSupportedException("StaticQuantizedConv2d runs ungrouped convolutions (groups = 1).");
        if (source.padding_mode != PaddingModes.Zeros)
            throw new NotSupportedException($"StaticQuantizedConv2d pads with zeros; this convolution pads with {source.padding_mode}.");
        in_channels = source.in_channels;
        out_channels = source.out_channels;
        _kernel = source.weight.shape.Skip(2).ToArray();
        _stride = Pair(source.stride);
        _dilation = Pair(source.dilation);
        _padding = SymmetricPadding(source)
            ?? throw new NotSupportedException("StaticQuantizedConv2d pads symmetrically; padding 'same' with an even window pads one side more.");
    }

    private static long[] Pair(long[] values) => values.Length == 1 ? new[] { values[0], values[0] } : values;

    /// <summary>The padding on each side of (H, W): as declared, 0 for 'valid', half the dilated window for 'same'; null when 'same' is lopsided.</summary>
    internal static long[]? SymmetricPadding(Conv2d conv)
    {
        if (conv.padding_type is null) return Pair(conv.padding ?? new long[] { 0, 0 });
        if (conv.padding_type == Padding.Valid) return new long[] { 0, 0 };
        var dilation = Pair(conv.dilation);
        long h = dilation[0] * (conv.weight.shape[2] - 1), w = dilation[1] * (conv.weight.shape[3] - 1);
        return h % 2 == 0 && w % 2 == 0 ? new[] { h / 2, w / 2 } : null;
    }

    /// <summary>The window (kH, kW), stride, dilation and padding on each side, as the source convolution's.</summary>
    internal long[] Window => _kernel;
    internal long[] Strides => _stride;
    internal long[] Dilations => _dilation;
    internal long[] Pads => _padding;

    /// <summary>Input channels.</summary>
    public long in_channels { get; }
    /// <summary>Output channels.</summary>
    public long out_channels { get; }

    private protected override Tensor Run(Tensor input)
    {
        if (input.dim() != 4 || input.shape[1] != in_channels)
            throw new ArgumentException($"StaticQuantizedConv2d takes (B, {in_channels}, H, W) input, not [{string.Join(", ", input.shape)}].", nameof(input));
        using var scope = NewDisposeScope();
        var x = input.contiguous();
        var g = new StaticKernels.ConvGeometry(
            (int)x.shape[0], (int)in_channels, (int)x.shape[2], (int)x.shape[3], (int)_kernel[0], (int)_kernel[1],
            (int)_stride[0], (int)_stride[1], (int)_padding[0], (int)_padding[1], (int)_dilation[0], (int)_dilation[1]);
        if (g.OutH <= 0 || g.OutW <= 0)
            throw new ArgumentException($"StaticQuantizedConv2d: the kernel does not fit the input [{string.Join(", ", input.shape)}].", nameof(input));
        if (g.Batch == 0) return zeros(0, out_channels, g.OutH, g.OutW).MoveToOuterDisposeScope();

        int rows = checked(g.Batch * g.OutH * g.OutW);
        int kp = StaticKernels.Padded(g.Channels * g.KernelH * g.KernelW);
        var (inScale, inZero) = InputQParams;
        var q = ArrayPool<byte>.Shared.Rent(checked((int)x.numel()));
        var a = ArrayPool<byte>.Shared.Rent(checked(rows * kp));
        var y = ArrayPool<float>.Shared.Rent(checked(rows * (int)out_channels));
        try
        {
            var xs = MemoryMarshal.Cast<byte, float>(x.bytes);
            bool over127 = StaticKernels.QuantizeRows(xs, 1, xs.Length, xs.Length, 1f / inScale, inZero, q);
            StaticKernels.Im2Col(q, g, (byte)inZero, kp, a);
            var ys = y.AsSpan(0, rows * (int)out_channels);
            Product(a.AsSpan(0, rows * kp), rows, kp, inScale, inZero, over127, ys);
            var output = empty(g.Batch, out_channels, g.OutH, g.OutW);
            var (inverse, zero, scale, low) = OutputGrid();
            StaticKernels.RequantizeToChannels(ys, g.Batch, g.OutH * g.OutW, (int)out_channels, inverse, zero, scale, low, MemoryMarshal.Cast<byte, float>(output.bytes));
            return output.MoveToOuterDisposeScope();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(q);
            ArrayPool<byte>.Shared.Return(a);
            ArrayPool<float>.Shared.Return(y);
        }
    }
}
