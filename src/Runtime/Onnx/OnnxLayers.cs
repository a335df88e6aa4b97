using ModelDsl.Runtime.Pruning;
using ModelDsl.Runtime.Quantization;
using TorchSharp.Modules;
using G = ModelDsl.Runtime.Onnx.OnnxGraph;

namespace ModelDsl.Runtime.Onnx;

/// <summary>
/// The ONNX mapping of every layer kind the exporter supports, in one place: each case turns the module a layer slot
/// holds (with its arguments and weights) into nodes, and says how the value's shape changes. Kinds not listed here
/// are refused with <see cref="NotSupportedException"/> naming the layer.
/// </summary>
internal static class OnnxLayers
{
    /// <summary>The kinds <see cref="Emit"/> maps, as the error message lists them.</summary>
    public const string Supported =
        "Linear (float, pruned, DynamicInt8, WeightOnlyInt8, Float16, StaticInt8), Conv1d, Conv2d (also StaticInt8), BatchNorm1d, BatchNorm2d (also folded), LayerNorm, MaxPool2d, AvgPool2d, " +
        "AdaptiveAvgPool2d, Flatten, Dropout, Identity, ReLU, GELU, SiLU, Tanh, Sigmoid, Softmax, LogSoftmax, Embedding, PositionalEmbedding, TransformerBlock, LSTM, GRU (float), Add, Multiply, Concat, and generated models used as layers";

    /// <summary>Adds the nodes of layer <paramref name="name"/> (the module <paramref name="module"/>) applied to <paramref name="x"/>.</summary>
    public static OnnxValue Emit(G g, string name, object module, OnnxValue x) => module switch
    {
        // Pruning's masks are folded for Linear and convolutions; another pruned module would export a stale weight.
        nn.Module pruned when pruned is not (Linear or TorchSharp.Modules.Convolution) && Prune.IsPruned(pruned) => throw new NotSupportedException(
            $"ONNX export folds pruning masks into Linear and convolution layers only; layer '{name}' ({KindOf(module)}) is pruned (make the pruning permanent with Prune.Remove first)"),
        Linear linear => LinearFloat(g, name, x, Folded(linear, "weight", linear.weight!), Folded(linear, "bias", linear.bias), linear.out_features),
        DynamicQuantizedLinear quantized => QuantizedLinear(g, name, x, quantized),
        StaticQuantizedLayer quantized => StaticQdq(g, name, x, quantized),
        Convolution conv => Convolution(g, name, x, conv),
        BatchNorm norm => BatchNormalization(g, name, x, norm),
        LayerNorm norm => LayerNormalization(g, name, x, norm.normalized_shape.Length, norm.eps, norm.weight, norm.bias, norm.normalized_shape),
        MaxPool2d pool => Pool(g, name, x, "MaxPool", pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode, countIncludePad: null),
        AvgPool2d pool when pool.divisor_override is null => Pool(g, name, x, "AveragePool", pool.kernel_size, pool.stride, pool.padding, null, pool.ceil_mode, pool.count_include_pad),
        Flatten flatten => FlattenLayer(g, name, x, flatten),
        Dropout or Dropout1d or Dropout2d or Identity => x,                 // inference: dropout is the identity
        Optimization.FoldedBatchNorm => x,                                    // folded into the layer before it
        ReLU => Unary(g, "Relu", name, x),
        Tanh => Unary(g, "Tanh", name, x),
        Sigmoid => Unary(g, "Sigmoid", name, x),
        SiLU => x.With(g.Node("Mul", new[] { x.Name, g.Node("Sigmoid", new[] { x.Name }, name + "_sigmoid") }, name)),
        GELU gelu => Gelu(g, name, x, gelu.approximate),
        Softmax softmax => x.With(g.Node("Softmax", new[] { x.Name }, name, G.Int("axis", softmax.dim))),
        LogSoftmax logSoftmax => x.With(g.Node("LogSoftmax", new[] { x.Name }, name, G.Int("axis", logSoftmax.dim))),
        Embedding embedding => EmbeddingLayer(g, name, x, embedding),
        PositionalEmbedding positions => Positions(g, name, x, positions),
        RecurrentLayer recurrent when !recurrent.IsQuantized => Recurrent(g, name, x, recurrent),
        TransformerBlock block => block.Layers.Select((layer, i) => (layer, i)).Aggregate(x, (v, l) => Transformer(g, $"{name}.{l.i}", v, l.layer)),
        TransformerLayer layer => Transformer(g, name, x, layer),
        AdaptiveAvgPool2d pool => AdaptiveAverage(g, name, x, pool.output_size),
        AvgPool2d => throw new NotSupportedException($"ONNX export does not support layer '{name}' (AvgPool2d with divisor_override): ONNX's AveragePool has no divisor"),
        // A generated model used as a layer: its own slots, under its name (the state-dict prefix).
        ILayerHost nested when nested.ForwardIsGenerated => Layers(g, name + ".", nested, x),
        _ => throw new NotSupportedException(
            $"ONNX export does not support layer '{name}' ({KindOf(module)}); the kinds it exports are {Supported}"),
    };

    /// <summary>
    /// The layers of a generated model on <paramref name="input"/>, as its forward runs them: each layer on its sources'
    /// values (<see cref="LayerSummary.Sources"/>; a chain's previous layer), merges as ONNX Add, Mul and Concat. Returns
    /// the output layer's value.
    /// </summary>
    public static OnnxValue Layers(G g, string prefix, ILayerHost host, OnnxValue input) =>
        Layers(g, prefix, host, new Dictionary<string, OnnxValue>(StringComparer.Ordinal) { [ModelSummary.InputName] = input });

    /// <summary>As <see cref="Layers(G, string, ILayerHost, OnnxValue)"/> on the model's inputs by source name (several inputs: each by its name).</summary>
    public static OnnxValue Layers(G g, string prefix, ILayerHost host, Dictionary<string, OnnxValue> values)
    {
        var summary = host.Summary;
        foreach (var layer in summary.Layers)
        {
            string name = prefix + layer.Name;
            var sources = layer.Sources.Select(s => values[s]).ToArray();
            var module = host.GetLayer(layer.Name);
            values[layer.Name] = module switch
            {
                ModelDsl.Layers.Add => sources[0].With(g.Node("Add", sources.Select(v => v.Name), name), Broadcast(sources[0].Shape, sources[1].Shape)),
                ModelDsl.Layers.Multiply => sources[0].With(g.Node("Mul", sources.Select(v => v.Name), name), Broadcast(sources[0].Shape, sources[1].Shape)),
                ModelDsl.Layers.Concat concat => ConcatLayer(g, name, sources, concat.Dim),
                _ => Emit(g, name, module, sources[0]),
            };
        }
        return summary.OutputLayer is { } output ? values[output] : values.Values.First();
    }

    /// <summary>NumPy/PyTorch broadcasting of two shapes: right-aligned, a size 1 stretches.</summary>
    private static OnnxDim[] Broadcast(OnnxDim[] a, OnnxDim[] b)
    {
        int rank = Math.Max(a.Length, b.Length);
        var shape = new OnnxDim[rank];
        for (int i = 0; i < rank; i++)
        {
            var x = i - (rank - a.Length) >= 0 ? a[i - (rank - a.Length)] : OnnxDim.Of(1);
            var y = i - (rank - b.Length) >= 0 ? b[i - (rank - b.Length)] : OnnxDim.Of(1);
            shape[i] = x.Size == 1 ? y : x;
        }
        return shape;
    }

    private static OnnxValue ConcatLayer(G g, string name, OnnxValue[] sources, long dim)
    {
        int axis = (int)(dim < 0 ? dim + sources[0].Rank : dim);
        var shape = (OnnxDim[])sources[0].Shape.Clone();
        shape[axis] = sources.All(v => v.Shape[axis].IsKnown && v.Shape[axis].Symbol is null) ? OnnxDim.Of(sources.Sum(v => v.Shape[axis].Size)) : OnnxDim.Unknown;
        return sources[0].With(g.Node("Concat", sources.Select(v => v.Name), name, G.Int("axis", axis)), shape);
    }

    private static string KindOf(object module) => module switch
    {
        RecurrentLayer recurrent => (recurrent.IsLstm ? "LSTM" : "GRU") + (recurrent.IsQuantized ? ", int8" : ""),
        _ => module.GetType().Name,
    };

    private static OnnxValue Unary(G g, string op, string name, OnnxValue x) => x.With(g.Node(op, new[] { x.Name }, name));

    /// <summary>
    /// The tensor a pruned module computes with (<c>weight_orig * weight_mask</c>, what its forward pre-hook sets),
    /// so the file holds plain weights; for a module without pruning, its own tensor.
    /// </summary>
    [return: System.Diagnostics.CodeAnalysis.NotNullIfNotNull(nameof(current))]
    private static Tensor? Folded(nn.Module module, string parameter, Tensor? current)
    {
        if (current is null || !Prune.PrunedParameters(module).Contains(parameter)) return current;
        var orig = module.named_parameters(recurse: false).First(p => p.name == parameter + "_orig").parameter;
        var mask = module.named_buffers(recurse: false).First(b => b.name == parameter + "_mask").buffer;
        return mask.mul(orig); // freed with OnnxExport.Build's dispose scope
    }

    // ---- Linear: Gemm on (B, in); Transpose + MatMul + Add on (*, in) ----

    private static OnnxValue LinearFloat(G g, string name, OnnxValue x, Tensor weight, Tensor? bias, long outFeatures)
    {
        string w = g.Initializer(name + ".weight", weight);
        string? b = bias is null ? null : g.Initializer(name + ".bias", bias);
        return LinearWith(g, name, x, w, b, outFeatures);
    }

    private static OnnxValue LinearWith(G g, string name, OnnxValue x, string weight, string? bias, long outFeatures)
    {
        var shape = WithLast(x.Shape, outFeatures);
        if (x.Rank == 2)
        {
            var inputs = bias is null ? new[] { x.Name, weight } : new[] { x.Name, weight, bias };
            return new OnnxValue(g.Node("Gemm", inputs, name, G.Int("transB", 1)), shape);
        }
        string wt = g.Node("Transpose", new[] { weight }, name + ".weight_t", G.Ints("perm", new long[] { 1, 0 }));
        string y = g.Node("MatMul", new[] { x.Name, wt }, bias is null ? name : name + "_matmul");
        return new OnnxValue(bias is null ? y : g.Node("Add", new[] { y, bias }, name), shape);
    }

    /// <summary>
    /// DynamicInt8: the input quantised to uint8 with a per-call scale and zero point (<see cref="OnnxInt8Activations"/>:
    /// our reduce_range numerics spelled in ONNX ops, or <c>DynamicQuantizeLinear</c>), <c>MatMulInteger</c> with the
    /// int8 weight (zero point 0), then the int32 sums times <c>a_scale · w_scale</c> plus the float bias.
    /// WeightOnlyInt8: <c>DequantizeLinear</c> of the int8 weight, then a float Linear. Float16: a <c>Cast</c> of the
    /// float16 weight, then a float Linear.
    /// </summary>
    private static OnnxValue QuantizedLinear(G g, string name, OnnxValue x, DynamicQuantizedLinear q)
    {
        string? bias = q.bias is null ? null : g.Initializer(name + ".bias", q.bias);
        string weight = g.Initializer(name + ".weight", q.weight);
        switch (q.Mode)
        {
            case QuantizeMode.Float16:
                return LinearWith(g, name, x, g.Node("Cast", new[] { weight }, name + ".weight_float", G.Int("to", (long)Proto.TensorProto.Types.DataType.Float)), bias, q.out_features);
            case QuantizeMode.WeightOnlyInt8:
            {
                string scale = g.FloatScalar(name + ".weight_scale", q.WeightScale);
                return LinearWith(g, name, x, g.Node("DequantizeLinear", new[] { weight, scale }, name + ".weight_float"), bias, q.out_features);
            }
            default:
            {
                string weightScale = g.FloatScalar(name + ".weight_scale", q.WeightScale);
                var (xq, xScale, xZeroPoint) = g.Int8Activations == OnnxInt8Activations.DynamicQuantizeLinear
                    ? DynamicQuantizeLinear(g, name, x)
                    : ReduceRangeQuantize(g, name, x);
                string wt = g.Node("Transpose", new[] { weight }, name + ".weight_t", G.Ints("perm", new long[] { 1, 0 }));
                string sums = g.Node("MatMulInteger", new[] { xq, wt, xZeroPoint }, name + "_int32");
                string floats = g.Node("Cast", new[] { sums }, name + "_sums", G.Int("to", (long)Proto.TensorProto.Types.DataType.Float));
                string scale = g.Node("Mul", new[] { xScale, weightScale }, name + "_scale");
                string y = g.Node("Mul", new[] { floats, scale }, bias is null ? name : name + "_scaled");
                return new OnnxValue(bias is null ? y : g.Node("Add", new[] { y, bias }, name), WithLast(x.Shape, q.out_features));
            }
        }
    }

    /// <summary>
    /// StaticInt8 in the QDQ format: <c>QuantizeLinear</c> → <c>DequantizeLinear</c> of the input with its fixed uint8
    /// scale and zero point, the int8 weight through <c>DequantizeLinear</c> (per output channel, axis 0, zero points 0),
    /// the float Conv or Gemm with the float bias, the fused Relu, and the output's <c>QuantizeLinear</c> →
    /// <c>DequantizeLinear</c>. ONNX Runtime fuses the pattern into its int8 kernels (QLinearConv, QGemm).
    /// </summary>
    private static OnnxValue StaticQdq(G g, string name, OnnxValue x, StaticQuantizedLayer q)
    {
        string Qdq(string value, string hint, (float Scale, int ZeroPoint) qparams)
        {
            string scale = g.NewInitializer($"{name}.{hint}_scale", tensor(qparams.Scale));
            string zeroPoint = g.NewInitializer($"{name}.{hint}_zero_point", tensor((byte)qparams.ZeroPoint));
            string quantized = g.Node("QuantizeLinear", new[] { value, scale, zeroPoint }, $"{name}_{hint}_q");
            return g.Node("DequantizeLinear", new[] { quantized, scale, zeroPoint }, $"{name}_{hint}_dq");
        }
        string input = Qdq(x.Name, "input", q.InputQParams);
        string weight = g.Node("DequantizeLinear",
            new[] { g.Initializer(name + ".weight", q.weight), g.Initializer(name + ".weight_scales", q.weight_scales),
                    g.NewInitializer(name + ".weight_zero_points", zeros(q.weight.shape[0], ScalarType.Int8)) },
            name + ".weight_float", G.Int("axis", 0));
        string? bias = q.bias is null ? null : g.Initializer(name + ".bias", q.bias);
        OnnxValue y = q switch
        {
            StaticQuantizedConv2d conv => ConvolutionWith(g, name, x.With(input), weight, bias, conv.out_channels,
                conv.Window, conv.Strides, conv.Dilations, conv.Pads.Concat(conv.Pads).ToArray(), groups: 1),
            StaticQuantizedLinear linear => LinearWith(g, name, x.With(input), weight, bias, linear.out_features),
            _ => throw new NotSupportedException($"ONNX export does not support layer '{name}' ({q.GetType().Name})"),
        };
        if (q.FusedRelu) y = Unary(g, "Relu", name + "_relu", y);
        return y.With(Qdq(y.Name, "output", q.OutputQParams));
    }

    private static (string Quantized, string Scale, string ZeroPoint) DynamicQuantizeLinear(G g, string name, OnnxValue x)
    {
        var outputs = g.Node("DynamicQuantizeLinear", new[] { x.Name }, new[] { name + "_xq", name + "_x_scale", name + "_x_zero_point" });
        return (outputs[0], outputs[1], outputs[2]);
    }

    /// <summary>
    /// PyTorch's dynamic activation quantisation with reduce_range, as <c>QuantizationRules.ChooseActivationQParams</c>
    /// and <c>ActivationKernels.Quantize</c> compute it: [min, max] widened to contain 0; scale = (max − min)/127 in
    /// float64 (0 → 0.1, below 6.1e-5 raised to it), used as float32; the zero point from the end with the smaller
    /// error, clamped to 0..127 and rounded half to even; q = clamp(round(x · fl32(1/scale) + zp), 0, 127) as uint8.
    /// </summary>
    private static (string Quantized, string Scale, string ZeroPoint) ReduceRangeQuantize(G g, string name, OnnxValue x)
    {
        const long FloatType = (long)Proto.TensorProto.Types.DataType.Float, DoubleType = (long)Proto.TensorProto.Types.DataType.Double;
        string F(string op, string hint, params string[] inputs) => g.Node(op, inputs, $"{name}_{hint}");
        string Cast(string value, long to, string hint) => g.Node("Cast", new[] { value }, $"{name}_{hint}", G.Int("to", to));
        string zero = g.FloatScalar("const_zero", 0f);
        string dZero = g.DoubleScalar("const_d_zero", 0), d127 = g.DoubleScalar("const_d_127", 127);

        string min = Cast(F("Min", "min0", g.Node("ReduceMin", new[] { x.Name }, $"{name}_min", G.Int("keepdims", 0)), zero), DoubleType, "min_d");
        string max = Cast(F("Max", "max0", g.Node("ReduceMax", new[] { x.Name }, $"{name}_max", G.Int("keepdims", 0)), zero), DoubleType, "max_d");
        string raw = F("Div", "scale_raw", F("Sub", "range", max, min), d127);
        string isZero = F("Equal", "scale_is_zero", raw, dZero);
        // The zero point keeps the unclamped scale's ratio (PyTorch widens min and max with the scale), 0.1 when it is 0.
        string ratioScale = F("Where", "scale_ratio", isZero, g.DoubleScalar("const_d_tenth", 0.1), raw);
        string clamped = F("Max", "scale_clamped", raw, g.DoubleScalar("const_d_small_scale", (double)6.1e-5f));
        string scale = Cast(F("Where", "scale_d", isZero, g.DoubleScalar("const_d_tenth", 0.1), clamped), FloatType, "x_scale");

        string a = F("Div", "min_ratio", min, ratioScale), b = F("Div", "max_ratio", max, ratioScale);
        string fromMin = F("Neg", "from_min", a), fromMax = F("Sub", "from_max", d127, b);
        string errorMin = F("Neg", "error_min", F("Abs", "abs_min", a)), errorMax = F("Sub", "error_max", d127, F("Abs", "abs_max", b));
        string initial = F("Where", "zp_initial", F("Less", "min_closer", errorMin, errorMax), fromMin, fromMax);
        string zeroPoint = Cast(F("Round", "zp_d", F("Clip", "zp_clipped", initial, dZero, d127)), FloatType, "x_zero_point_f");

        string inverse = Cast(F("Reciprocal", "inverse_d", Cast(scale, DoubleType, "x_scale_d")), FloatType, "inverse");
        string shifted = F("Add", "shifted", F("Mul", "scaled_x", x.Name, inverse), zeroPoint);
        string q = Cast(F("Clip", "q_f", F("Round", "rounded", shifted), zero, g.FloatScalar("const_127", 127f)), (long)Proto.TensorProto.Types.DataType.Uint8, "xq");
        return (q, scale, Cast(zeroPoint, (long)Proto.TensorProto.Types.DataType.Uint8, "x_zero_point"));
    }

    // ---- convolutions, normalisation, pooling ----

    private static OnnxValue Convolution(G g, string name, OnnxValue x, Convolution conv)
    {
        if (conv.transposed)
            throw new NotSupportedException($"ONNX export does not support layer '{name}' (a transposed convolution); the kinds it exports are {Supported}");
        if (conv.padding_mode != PaddingModes.Zeros)
            throw new NotSupportedException($"ONNX export supports zero padding only; layer '{name}' pads with {conv.padding_mode}");
        int spatial = conv.kernel_size.Length;
        long[] kernel = conv.kernel_size, stride = conv.stride, dilation = conv.dilation;
        var pads = new long[2 * spatial];
        if (conv.padding_type == Padding.Same)
        {
            // PyTorch's padding='same' (stride 1): the total d·(k−1), the odd one on the end side.
            for (int i = 0; i < spatial; i++)
            {
                long total = dilation[i] * (kernel[i] - 1);
                pads[i] = total / 2;
                pads[i + spatial] = total - total / 2;
            }
        }
        else if (conv.padding_type != Padding.Valid)
        {
            for (int i = 0; i < spatial; i++) pads[i] = pads[i + spatial] = conv.padding![i];
        }
        string w = g.Initializer(name + ".weight", Folded(conv, "weight", conv.weight!));
        string? b = conv.bias is { } bias ? g.Initializer(name + ".bias", Folded(conv, "bias", bias)) : null;
        return ConvolutionWith(g, name, x, w, b, conv.out_channels, kernel, stride, dilation, pads, conv.groups);
    }

    /// <summary>A Conv node of the given weight and bias values; <paramref name="pads"/> are ONNX's (all begins, then all ends).</summary>
    private static OnnxValue ConvolutionWith(G g, string name, OnnxValue x, string weight, string? bias, long outChannels,
        long[] kernel, long[] stride, long[] dilation, long[] pads, long groups)
    {
        int spatial = kernel.Length;
        var inputs = new List<string> { x.Name, weight };
        if (bias is not null) inputs.Add(bias);
        string y = g.Node("Conv", inputs, name,
            G.Ints("kernel_shape", kernel), G.Ints("strides", stride), G.Ints("pads", pads), G.Ints("dilations", dilation), G.Int("group", groups));
        var shape = (OnnxDim[])x.Shape.Clone();
        shape[1] = OnnxDim.Of(outChannels);
        for (int i = 0; i < spatial; i++)
            shape[2 + i] = Window(x.Shape[2 + i], kernel[i], stride[i], pads[i] + pads[i + spatial], dilation[i], ceil: false);
        return new OnnxValue(y, shape);
    }

    private static OnnxValue BatchNormalization(G g, string name, OnnxValue x, BatchNorm norm)
    {
        if (!norm.track_running_stats || norm.running_mean is null || norm.running_var is null)
            throw new NotSupportedException($"ONNX export needs running statistics; layer '{name}' (BatchNorm, track_running_stats = false) normalises with each batch's own");
        long c = norm.num_features;
        string scale = norm.weight is { } w ? g.Initializer(name + ".weight", w) : g.NewInitializer(name + ".weight", ones(c));
        string shift = norm.bias is { } b ? g.Initializer(name + ".bias", b) : g.NewInitializer(name + ".bias", zeros(c));
        string mean = g.Initializer(name + ".running_mean", norm.running_mean);
        string variance = g.Initializer(name + ".running_var", norm.running_var);
        return x.With(g.Node("BatchNormalization", new[] { x.Name, scale, shift, mean, variance }, name, G.Float("epsilon", (float)norm.eps)));
    }

    private static OnnxValue LayerNormalization(G g, string name, OnnxValue x, int normalizedDims, double eps, Tensor? weight, Tensor? bias, long[] normalizedShape)
    {
        string scale = weight is not null ? g.Initializer(name + ".weight", weight) : g.NewInitializer(name + ".weight", ones(normalizedShape));
        string shift = bias is not null ? g.Initializer(name + ".bias", bias) : g.NewInitializer(name + ".bias", zeros(normalizedShape));
        return x.With(g.Node("LayerNormalization", new[] { x.Name, scale, shift }, name, G.Int("axis", -normalizedDims), G.Float("epsilon", (float)eps)));
    }

    private static OnnxValue Pool(G g, string name, OnnxValue x, string op, long[] kernel, long[]? stride, long[]? padding, long[]? dilation, bool ceilMode, bool? countIncludePad)
    {
        int spatial = kernel.Length;
        stride = stride is { Length: > 0 } ? stride : kernel;                 // PyTorch: stride defaults to the kernel
        padding = padding is { Length: > 0 } ? padding : new long[spatial];
        dilation = dilation is { Length: > 0 } ? dilation : Enumerable.Repeat(1L, spatial).ToArray();
        if (stride.Length == 1 && spatial > 1) stride = Enumerable.Repeat(stride[0], spatial).ToArray();
        if (padding.Length == 1 && spatial > 1) padding = Enumerable.Repeat(padding[0], spatial).ToArray();
        if (dilation.Length == 1 && spatial > 1) dilation = Enumerable.Repeat(dilation[0], spatial).ToArray();
        var pads = padding.Concat(padding).ToArray();
        var attributes = new List<Proto.AttributeProto>
        {
            G.Ints("kernel_shape", kernel), G.Ints("strides", stride), G.Ints("pads", pads), G.Int("ceil_mode", ceilMode ? 1 : 0),
        };
        if (op == "MaxPool") attributes.Add(G.Ints("dilations", dilation));
        if (countIncludePad is { } include) attributes.Add(G.Int("count_include_pad", include ? 1 : 0));
        string y = g.Node(op, new[] { x.Name }, name, attributes.ToArray());
        var shape = (OnnxDim[])x.Shape.Clone();
        for (int i = 0; i < spatial; i++)
            shape[x.Rank - spatial + i] = Window(x.Shape[x.Rank - spatial + i], kernel[i], stride[i], 2 * padding[i], dilation[i], ceilMode);
        return new OnnxValue(y, shape);
    }

    /// <summary>A convolution or pooling output size (floor mode); unknown when the input size or the rounding is.</summary>
    private static OnnxDim Window(OnnxDim input, long kernel, long stride, long totalPadding, long dilation, bool ceil) =>
        input.IsKnown && !ceil ? OnnxDim.Of((input.Size + totalPadding - dilation * (kernel - 1) - 1) / stride + 1) : OnnxDim.Unknown;

    /// <summary>
    /// PyTorch's adaptive average pooling: output cell i averages input rows floor(i·H/oh) … ceil((i+1)·H/oh) − 1
    /// (likewise for columns). A (1, 1) output is GlobalAveragePool; otherwise the input's spatial size must be known:
    /// AveragePool where it divides evenly, else one Slice + ReduceMean per cell (at most 64 cells).
    /// </summary>
    private static OnnxValue AdaptiveAverage(G g, string name, OnnxValue x, long[] outputSize)
    {
        long oh = outputSize[0], ow = outputSize.Length > 1 ? outputSize[1] : outputSize[0];
        var shape = (OnnxDim[])x.Shape.Clone();
        shape[^2] = OnnxDim.Of(oh);
        shape[^1] = OnnxDim.Of(ow);
        if (oh == 1 && ow == 1)
            return new OnnxValue(g.Node("GlobalAveragePool", new[] { x.Name }, name), shape);
        OnnxDim hDim = x.Shape[^2], wDim = x.Shape[^1];
        if (!hDim.IsKnown || !wDim.IsKnown || x.Rank != 4)
            throw new NotSupportedException($"ONNX export of AdaptiveAvgPool2d to ({oh}, {ow}) needs a (B, C, H, W) input of known H and W; layer '{name}' gets ({string.Join(", ", x.Shape.Select(d => d.Symbol ?? (d.IsKnown ? d.Size.ToString(System.Globalization.CultureInfo.InvariantCulture) : "?")))})");
        long h = hDim.Size, w = wDim.Size;
        if (h % oh == 0 && w % ow == 0)
        {
            var kernel = new[] { h / oh, w / ow };
            return new OnnxValue(g.Node("AveragePool", new[] { x.Name }, name, G.Ints("kernel_shape", kernel), G.Ints("strides", kernel)), shape);
        }
        if (oh * ow > 64)
            throw new NotSupportedException($"ONNX export of AdaptiveAvgPool2d supports uneven windows for at most 64 output cells; layer '{name}' has {oh}×{ow}");
        var rows = new List<string>();
        for (long i = 0; i < oh; i++)
        {
            var cells = new List<string>();
            for (long j = 0; j < ow; j++)
            {
                long h0 = i * h / oh, h1 = ((i + 1) * h + oh - 1) / oh, w0 = j * w / ow, w1 = ((j + 1) * w + ow - 1) / ow;
                string window = g.Node("Slice", new[] { x.Name, g.Int64s(h0, w0), g.Int64s(h1, w1), g.Int64s(2, 3) }, $"{name}_window_{i}_{j}");
                cells.Add(g.Node("ReduceMean", new[] { window }, $"{name}_cell_{i}_{j}", G.Ints("axes", new long[] { 2, 3 }), G.Int("keepdims", 1)));
            }
            rows.Add(cells.Count == 1 ? cells[0] : g.Node("Concat", cells, $"{name}_row_{i}", G.Int("axis", 3)));
        }
        return new OnnxValue(rows.Count == 1 ? g.Node("Identity", rows, name) : g.Node("Concat", rows, name, G.Int("axis", 2)), shape);
    }

    private static OnnxValue FlattenLayer(G g, string name, OnnxValue x, Flatten flatten)
    {
        long start = flatten.start_dim < 0 ? flatten.start_dim + x.Rank : flatten.start_dim;
        long end = flatten.end_dim < 0 ? flatten.end_dim + x.Rank : flatten.end_dim;
        if (start != 1 || end != x.Rank - 1)
            throw new NotSupportedException($"ONNX export supports Flatten from dimension 1 to the last; layer '{name}' flattens {flatten.start_dim}..{flatten.end_dim} of a rank-{x.Rank} value");
        var rest = x.Shape.Skip(1).ToArray();
        var size = rest.All(d => d.IsKnown) ? OnnxDim.Of(rest.Aggregate(1L, (p, d) => p * d.Size)) : OnnxDim.Unknown;
        return new OnnxValue(g.Node("Flatten", new[] { x.Name }, name, G.Int("axis", 1)), new[] { x.Shape[0], size });
    }

    /// <summary>GELU as opset 17 has no Gelu op: 0.5·x·(1 + erf(x/√2)), or the tanh approximation.</summary>
    private static OnnxValue Gelu(G g, string name, OnnxValue x, GELU.Approximate approximate)
    {
        string half = g.FloatScalar("const_half", 0.5f), one = g.FloatScalar("const_one", 1f);
        string inner;
        if (approximate == GELU.Approximate.tanh)
        {
            // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
            string cube = g.Node("Mul", new[] { x.Name, g.Node("Mul", new[] { x.Name, x.Name }, name + "_sq") }, name + "_cube");
            string poly = g.Node("Add", new[] { x.Name, g.Node("Mul", new[] { cube, g.FloatScalar("const_gelu_c", 0.044715f) }, name + "_c") }, name + "_poly");
            inner = g.Node("Tanh", new[] { g.Node("Mul", new[] { poly, g.FloatScalar("const_sqrt_2_over_pi", (float)Math.Sqrt(2 / Math.PI)) }, name + "_arg") }, name + "_tanh");
        }
        else
        {
            inner = g.Node("Erf", new[] { g.Node("Mul", new[] { x.Name, g.FloatScalar("const_inv_sqrt2", (float)(1 / Math.Sqrt(2))) }, name + "_arg") }, name + "_erf");
        }
        string gate = g.Node("Mul", new[] { g.Node("Add", new[] { inner, one }, name + "_1p"), half }, name + "_gate");
        return x.With(g.Node("Mul", new[] { x.Name, gate }, name));
    }

    // ---- sequences ----

    private static OnnxValue EmbeddingLayer(G g, string name, OnnxValue x, Embedding embedding)
    {
        var weight = embedding.weight!;
        string y = g.Node("Gather", new[] { g.Initializer(name + ".weight", weight), x.Name }, name, G.Int("axis", 0));
        return new OnnxValue(y, x.Shape.Append(OnnxDim.Of(weight.shape[1])).ToArray());
    }

    /// <summary>x + weight[:T]: the first T rows of the table, T read from the input's shape at run time.</summary>
    private static OnnxValue Positions(G g, string name, OnnxValue x, PositionalEmbedding positions)
    {
        string length = g.Node("Shape", new[] { x.Name }, name + "_T", G.Int("start", 1), G.Int("end", 2));
        string rows = g.Node("Slice", new[] { g.Initializer(name + ".weight", positions.weight), g.Int64s(0), length, g.Int64s(0) }, name + "_rows");
        return x.With(g.Node("Add", new[] { x.Name, rows }, name));
    }

    /// <summary>
    /// LSTM/GRU, one ONNX <c>LSTM</c>/<c>GRU</c> node per stacked layer (both directions in one node), sequence-major
    /// (ONNX's layout 0) inside. PyTorch's gate blocks are reordered to ONNX's: LSTM i, f, g, o → i, o, f, c; GRU
    /// r, z, n → z, r, h with <c>linear_before_reset = 1</c> (PyTorch applies r to W_hn·h + b_hn). Y
    /// (T, directions, B, H) becomes the next layer's (T, B, directions·H).
    /// </summary>
    private static OnnxValue Recurrent(G g, string name, OnnxValue x, RecurrentLayer layer)
    {
        var options = layer.Options;
        long[] order = layer.IsLstm ? new long[] { 0, 3, 1, 2 } : new long[] { 1, 0, 2 };
        int directions = options.Bidirectional ? 2 : 1;
        var parameters = layer.Module.named_parameters(recurse: false).ToDictionary(p => p.name, p => (Tensor)p.parameter);
        Tensor Gates(string parameter)
        {
            var chunks = parameters[parameter].chunk(order.Length, 0);
            return cat(order.Select(i => chunks[i]).ToArray(), 0);
        }
        Tensor Stacked(Func<string, Tensor> perDirection) =>
            stack(Enumerable.Range(0, directions).Select(d => perDirection(d == 0 ? "" : "_reverse")).ToArray(), 0);

        string sequence = options.BatchFirst ? g.Node("Transpose", new[] { x.Name }, name + "_time_major", G.Ints("perm", new long[] { 1, 0, 2 })) : x.Name;
        for (long k = 0; k < options.NumLayers; k++)
        {
            string l = $"{name}.rnn.l{k}";
            string w = g.NewInitializer(l + ".W", Stacked(sfx => Gates($"weight_ih_l{k}{sfx}")));
            string r = g.NewInitializer(l + ".R", Stacked(sfx => Gates($"weight_hh_l{k}{sfx}")));
            string b = g.NewInitializer(l + ".B", Stacked(sfx => cat(new[] { Gates($"bias_ih_l{k}{sfx}"), Gates($"bias_hh_l{k}{sfx}") }, 0)));
            var attributes = new List<Proto.AttributeProto> { G.Int("hidden_size", options.HiddenSize), G.Text("direction", directions == 2 ? "bidirectional" : "forward") };
            if (!layer.IsLstm) attributes.Add(G.Int("linear_before_reset", 1));
            string y = g.Node(layer.IsLstm ? "LSTM" : "GRU", new[] { sequence, w, r, b }, l + "_y", attributes.ToArray());
            string merged = g.Node("Transpose", new[] { y }, l + "_tbdh", G.Ints("perm", new long[] { 0, 2, 1, 3 }));
            sequence = g.Node("Reshape", new[] { merged, g.Int64s(0, 0, -1) }, l + "_out");
        }
        string output = options.BatchFirst ? g.Node("Transpose", new[] { sequence }, name, G.Ints("perm", new long[] { 1, 0, 2 })) : g.Node("Identity", new[] { sequence }, name);
        return new OnnxValue(output, WithLast(x.Shape, directions * options.HiddenSize));
    }

    /// <summary>
    /// One pre-LayerNorm layer: x + out_proj(attention(norm1(x))), then x + linear2(gelu(linear1(norm2(x)))). The
    /// attention is spelled out: in_proj, reshape to (3, B, heads, T, d), softmax(q·kᵀ/√d + causal mask)·v.
    /// Each slot goes through <see cref="Emit"/>, so int8 slots export as int8.
    /// </summary>
    private static OnnxValue Transformer(G g, string name, OnnxValue x, TransformerLayer layer)
    {
        long c = layer.EmbeddingDim, heads = layer.Heads, d = c / heads;
        OnnxValue Slot(string slot, OnnxValue v) => Emit(g, $"{name}.{slot}", layer.GetLayer(slot), v);

        var h = Slot("norm1", x);
        var qkv = Slot("in_proj", h);
        string split = g.Node("Reshape", new[] { qkv.Name, g.Int64s(0, 0, 3, heads, d) }, name + ".qkv");
        string perm = g.Node("Transpose", new[] { split }, name + ".qkv_heads", G.Ints("perm", new long[] { 2, 0, 3, 1, 4 }));
        string Part(long i, string what) => g.Node("Gather", new[] { perm, g.Int64Scalar(i) }, $"{name}.{what}", G.Int("axis", 0));
        string q = Part(0, "q"), k = Part(1, "k"), v = Part(2, "v");
        string kt = g.Node("Transpose", new[] { k }, name + ".k_t", G.Ints("perm", new long[] { 0, 1, 3, 2 }));
        string scores = g.Node("Mul", new[] { g.Node("MatMul", new[] { q, kt }, name + ".qk"), g.FloatScalar($"const_inv_sqrt_{d}", (float)(1 / Math.Sqrt(d))) }, name + ".scores");
        if (layer.Causal)
            scores = g.Node("Add", new[] { scores, CausalMask(g, h.Name) }, name + ".masked");
        string weights = g.Node("Softmax", new[] { scores }, name + ".attention", G.Int("axis", -1));
        string y = g.Node("MatMul", new[] { weights, v }, name + ".heads");
        string merged = g.Node("Reshape", new[] { g.Node("Transpose", new[] { y }, name + ".heads_t", G.Ints("perm", new long[] { 0, 2, 1, 3 })), g.Int64s(0, 0, c) }, name + ".merged");
        var attention = Slot("out_proj", new OnnxValue(merged, x.Shape));
        var afterAttention = x.With(g.Node("Add", new[] { x.Name, attention.Name }, name + ".residual1"));

        var hidden = Slot("linear1", Slot("norm2", afterAttention));
        var activated = Gelu(g, name + ".gelu", hidden, GELU.Approximate.none);
        var mlp = Slot("linear2", activated);
        return afterAttention.With(g.Node("Add", new[] { afterAttention.Name, mlp.Name }, name + ".residual2"));
    }

    /// <summary>The (T, T) causal mask: −∞ above the diagonal, 0 on and below it (Trilu of a −∞ square), T from <paramref name="like"/>.</summary>
    private static string CausalMask(G g, string like)
    {
        string length = g.Node("Shape", new[] { like }, "causal_T", G.Int("start", 1), G.Int("end", 2));
        string square = g.Node("Concat", new[] { length, length }, "causal_shape", G.Int("axis", 0));
        string full = g.Node("ConstantOfShape", new[] { square }, "causal_fill", G.TensorValue("value", tensor(new[] { float.NegativeInfinity })));
        return g.Node("Trilu", new[] { full, g.Int64Scalar(1) }, "causal_mask", G.Int("upper", 1));
    }

    private static OnnxDim[] WithLast(OnnxDim[] shape, long last)
    {
        var result = (OnnxDim[])shape.Clone();
        result[^1] = OnnxDim.Of(last);
        return result;
    }
}
