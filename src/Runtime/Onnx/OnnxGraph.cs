using Google.Protobuf;
using ModelDsl.Runtime.Onnx.Proto;

namespace ModelDsl.Runtime.Onnx;

/// <summary>One dimension of a value's shape as the exporter knows it: a size, a symbol (<c>batch</c>, <c>T</c>), or unknown.</summary>
internal readonly record struct OnnxDim(long Size, string? Symbol)
{
    public static readonly OnnxDim Unknown = new(-1, null);
    public bool IsKnown => Size >= 0;
    public static OnnxDim Of(long size) => new(size, null);
}

/// <summary>A value of the graph under construction: its name and what is known of its shape.</summary>
internal readonly record struct OnnxValue(string Name, OnnxDim[] Shape)
{
    public int Rank => Shape.Length;
    public OnnxValue With(string name) => new(name, Shape);
    public OnnxValue With(string name, OnnxDim[] shape) => new(name, shape);
}

/// <summary>
/// The ONNX graph being built: nodes in topological order (they are added in the order forward runs), initializers
/// (each tensor once, under its state-dict name), and value names kept unique.
/// </summary>
internal sealed class OnnxGraph
{
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private readonly Dictionary<(IntPtr Data, string Shape, ScalarType Type), string> _initializerOf = new();
    private readonly Dictionary<string, string> _constants = new(StringComparer.Ordinal);

    public OnnxGraph(OnnxInt8Activations int8Activations) => Int8Activations = int8Activations;

    /// <summary>How DynamicInt8 layers quantise their activations.</summary>
    public OnnxInt8Activations Int8Activations { get; }

    public GraphProto Proto { get; } = new();

    /// <summary>A value name not used yet: <paramref name="hint"/>, or it with a numeric suffix.</summary>
    public string Fresh(string hint)
    {
        if (_names.Add(hint)) return hint;
        for (int i = 1; ; i++)
        {
            string candidate = $"{hint}_{i}";
            if (_names.Add(candidate)) return candidate;
        }
    }

    /// <summary>Reserves a name that must be exactly <paramref name="name"/> (a graph input or output).</summary>
    public void Reserve(string name)
    {
        if (!_names.Add(name)) throw new InvalidOperationException($"the ONNX value name '{name}' is taken");
    }

    /// <summary>
    /// <paramref name="tensor"/> as an initializer named <paramref name="name"/> (a state-dict name); the same
    /// tensor given twice (a tied weight: the same storage, shape and dtype) is stored once.
    /// </summary>
    public string Initializer(string name, Tensor tensor)
    {
        var key = (Distributed.TensorMemory.DataPointer(tensor), string.Join(",", tensor.shape) + "/" + string.Join(",", tensor.stride()), tensor.dtype);
        if (_initializerOf.TryGetValue(key, out var existing)) return existing;
        string unique = Fresh(name);
        Proto.Initializer.Add(ToProto(unique, tensor));
        _initializerOf[key] = unique;
        return unique;
    }

    /// <summary>An initializer made here (not a model tensor): disposed after it is copied.</summary>
    public string NewInitializer(string name, Tensor tensor)
    {
        using (tensor)
        {
            string unique = Fresh(name);
            Proto.Initializer.Add(ToProto(unique, tensor));
            return unique;
        }
    }

    /// <summary>A constant int64 vector (shapes, axes, indices), shared by every node that needs the same values.</summary>
    public string Int64s(params long[] values) => Constant("const_i64_" + string.Join("_", values).Replace('-', 'm'), () => tensor(values, ScalarType.Int64));

    /// <summary>A constant int64 scalar (a Gather index, Trilu's k).</summary>
    public string Int64Scalar(long value) => Constant("const_i64_scalar_" + value.ToString(System.Globalization.CultureInfo.InvariantCulture).Replace('-', 'm'), () => tensor(value, ScalarType.Int64));

    /// <summary>A constant float32 scalar.</summary>
    public string FloatScalar(string hint, float value) => Constant(hint, () => tensor(value, ScalarType.Float32), value.ToString("R", System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>A constant float64 scalar (the activation scale is chosen in double, as PyTorch does).</summary>
    public string DoubleScalar(string hint, double value) => Constant(hint, () => tensor(value, ScalarType.Float64), value.ToString("R", System.Globalization.CultureInfo.InvariantCulture));

    private string Constant(string key, Func<Tensor> make, string? valueKey = null)
    {
        string fullKey = key + (valueKey is null ? "" : "=" + valueKey);
        if (_constants.TryGetValue(fullKey, out var name)) return name;
        name = NewInitializer(key, make());
        _constants[fullKey] = name;
        return name;
    }

    /// <summary>Adds a node with one output named after <paramref name="outputHint"/>; returns the output's name.</summary>
    public string Node(string opType, IEnumerable<string> inputs, string outputHint, params AttributeProto[] attributes) =>
        Node(opType, inputs, new[] { outputHint }, attributes)[0];

    /// <summary>Adds a node with several outputs; returns their names.</summary>
    public string[] Node(string opType, IEnumerable<string> inputs, string[] outputHints, params AttributeProto[] attributes)
    {
        var outputs = outputHints.Select(Fresh).ToArray();
        var node = new NodeProto { OpType = opType, Name = outputs[0] + "/" + opType };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        node.Attribute.AddRange(attributes);
        Proto.Node.Add(node);
        return outputs;
    }

    public static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };
    public static AttributeProto Float(string name, float value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };
    public static AttributeProto Text(string name, string value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };

    public static AttributeProto Ints(string name, IEnumerable<long> values)
    {
        var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        attribute.Ints.AddRange(values);
        return attribute;
    }

    public static AttributeProto TensorValue(string name, Tensor value)
    {
        using (value) return new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Tensor, T = ToProto(name, value) };
    }

    /// <summary>A value's declared type: element type and the shape as known (unknown sizes are left without value or symbol).</summary>
    public static ValueInfoProto ValueInfo(string name, TensorProto.Types.DataType type, IEnumerable<OnnxDim> shape)
    {
        var tensorShape = new TensorShapeProto();
        foreach (var dim in shape)
        {
            var d = new TensorShapeProto.Types.Dimension();
            if (dim.Symbol is { } symbol) d.DimParam = symbol;
            else if (dim.IsKnown) d.DimValue = dim.Size;
            tensorShape.Dim.Add(d);
        }
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = tensorShape } },
        };
    }

    /// <summary>The ONNX element type of a libtorch dtype the exporter writes.</summary>
    public static TensorProto.Types.DataType DataType(ScalarType type) => type switch
    {
        ScalarType.Float32 => TensorProto.Types.DataType.Float,
        ScalarType.Float64 => TensorProto.Types.DataType.Double,
        ScalarType.Float16 => TensorProto.Types.DataType.Float16,
        ScalarType.Int8 => TensorProto.Types.DataType.Int8,
        ScalarType.Byte => TensorProto.Types.DataType.Uint8,
        ScalarType.Int16 => TensorProto.Types.DataType.Int16,
        ScalarType.Int32 => TensorProto.Types.DataType.Int32,
        ScalarType.Int64 => TensorProto.Types.DataType.Int64,
        ScalarType.Bool => TensorProto.Types.DataType.Bool,
        _ => throw new NotSupportedException($"ONNX export does not write {type} tensors"),
    };

    /// <summary>A tensor's values as raw little-endian bytes (ONNX's raw_data), with its dims and element type.</summary>
    private static TensorProto ToProto(string name, Tensor value)
    {
        using var scope = NewDisposeScope();
        var cpu = value.detach().cpu().contiguous();
        var proto = new TensorProto { Name = name, DataType = (int)DataType(cpu.dtype), RawData = ByteString.CopyFrom(cpu.bytes) };
        proto.Dims.AddRange(cpu.shape);
        return proto;
    }
}
