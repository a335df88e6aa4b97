namespace ModelDsl.Runtime.Quantization;

/// <summary>
/// The quantised form of a generated model whose forward runs its layers in order: the same layers under the same
/// names (so <c>state_dict</c> keys match the float model's, apart from the quantised layers' own buffers), run in
/// that order. <c>Quantize.Dynamic</c> builds it; it is not meant to be created directly.
/// </summary>
public sealed class QuantizedSequentialModel : nn.Module<Tensor, Tensor>
{
    private readonly List<nn.Module<Tensor, Tensor>> _layers = new();

    internal QuantizedSequentialModel(string name, IEnumerable<(string Name, nn.Module<Tensor, Tensor> Module)> layers) : base(name)
    {
        foreach (var (layerName, module) in layers)
        {
            register_module(layerName, module);
            _layers.Add(module);
        }
    }

    /// <summary>The name of the model this was made from.</summary>
    public string ModelName => GetName();

    /// <summary>Runs the layers in order (through <c>call</c>, so their hooks run).</summary>
    /// <param name="input">The model's input.</param>
    public override Tensor forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var x = input;
        using var scope = NewDisposeScope();
        foreach (var layer in _layers)
            x = layer.call(x);
        return ReferenceEquals(x, input) ? x : x.MoveToOuterDisposeScope();
    }
}
