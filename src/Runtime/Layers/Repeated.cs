namespace ModelDsl.Layers;

/// <summary>
/// <c>[Block(Repeat = n)]</c>: n independent copies of a composed [Model], run one after another — PyTorch's
/// <c>nn.Sequential(*copies)</c>, so the state dict names them <c>Stage1.0.…</c>, <c>Stage1.1.…</c>. Through
/// <see cref="ILayerHost"/> its layers are the copies <c>0</c> … <c>n−1</c>, which passes walk like any generated model.
/// </summary>
public sealed class Repeated : nn.Module<Tensor, Tensor>, ILayerHost
{
    private readonly nn.Module<Tensor, Tensor>[] _copies;
    private readonly string _input;

    /// <summary>Creates <paramref name="count"/> copies, each from <paramref name="create"/> (its own parameters).</summary>
    /// <param name="count">At least 1.</param>
    /// <param name="create">Creates one copy.</param>
    /// <param name="input">The block's input shape as the compiler inferred it, for <see cref="ILayerHost.Summary"/>.</param>
    public Repeated(int count, Func<nn.Module<Tensor, Tensor>> create, string input = "?") : base(nameof(Repeated))
    {
        ArgumentNullException.ThrowIfNull(create);
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, "a block runs at least once");
        _input = input;
        RegisterComponents(); // the copies are registered by name below
        _copies = new nn.Module<Tensor, Tensor>[count];
        LayerNames = NumberedLayers.Names(count);
        for (int i = 0; i < count; i++)
        {
            _copies[i] = create();
            register_module(LayerNames[i], _copies[i]);
        }
    }

    /// <summary>The copies, in the order they run (what each slot holds now).</summary>
    public IReadOnlyList<nn.Module<Tensor, Tensor>> Copies => _copies;

    /// <summary>Whether each copy keeps only its input and runs again in backward (<see cref="Runtime.Training.BlockRecompute"/>).</summary>
    internal bool Recompute { get; set; }

    /// <summary>Runs the copies in sequence.</summary>
    public override Tensor forward(Tensor input) => NumberedLayers.Run(_copies, input, Recompute);

    /// <summary>The copies' names <c>0</c> … <c>n−1</c> (the registered sub-module names).</summary>
    public IReadOnlyList<string> LayerNames { get; }

    bool ILayerHost.ForwardIsGenerated => true;

    /// <summary>The copies as a chain, each with the block's input (and output) shape.</summary>
    ModelSummary ILayerHost.Summary => new(nameof(Repeated), _input, "Float32", LayerNames.Select(name =>
        new LayerSummary(name, _copies[Index(name)].GetType().Name, _input, _copies[Index(name)].parameters().Sum(p => p.numel()))).ToArray());

    /// <summary>The copy named <paramref name="name"/>.</summary>
    public object GetLayer(string name) => _copies[Index(name)];

    /// <summary>Replaces the copy named <paramref name="name"/>; returns the one it held.</summary>
    public object ReplaceLayer(string name, object replacement)
    {
        int i = Index(name);
        var previous = _copies[i];
        _copies[i] = replacement as nn.Module<Tensor, Tensor> ?? throw new ArgumentException($"a copy must be a Module<Tensor, Tensor>, got {replacement?.GetType().Name ?? "null"}", nameof(replacement));
        _internal_submodules[LayerNames[i]] = _copies[i]; // under its canonical name, in place: the state dict keeps its order
        return previous;
    }

    private int Index(string name) => NumberedLayers.Index(name, LayerNames, "a copy of this block", "copies");
}
