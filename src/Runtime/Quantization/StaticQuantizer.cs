using ModelDsl.Runtime.Optimization;
using TorchSharp.Modules;

namespace ModelDsl.Runtime.Quantization;

/// <summary>
/// PyTorch's eager post-training static quantisation over a generated model's layer slots: <c>fuse_modules</c>,
/// <c>prepare</c> (observers, with QuantStub/DeQuantStub placed as below), calibration, <c>convert</c>
/// (docs/optimization.md, "Static int8").
/// </summary>
/// <remarks>
/// Stub placement, decided from the generated forward's layer order: a quantised run starts at a Conv2d or Linear whose
/// input is float (a QuantStub's observer there) and continues through MaxPool2d, Flatten, Dropout, ReLU, Identity and
/// folded BatchNorms, which PyTorch runs on quantised tensors with the same scale and zero point, into the next Conv2d
/// or Linear, which then takes the previous layer's output parameters as its input's; any other layer ends the run
/// (a DeQuantStub before it), and so does the end of the model. A Conv2d or Linear followed by a ReLU (after its folded
/// BatchNorm, if any) is fused with it, as <c>fuse_modules</c> would be told to. A model whose forward is hand-written
/// gets a QuantStub and a DeQuantStub around each quantised layer; composed models are quantised inside, each on its own.
/// </remarks>
internal static class StaticQuantizer
{
    /// <summary>What a run did: the BatchNorms folded (fused) and the layers quantised, as paths.</summary>
    public sealed record Result(IReadOnlyList<string> Folded, IReadOnlyList<string> Quantized);

    public static Result Run(nn.Module<Tensor, Tensor> model, IEnumerable<Tensor> calibration)
    {
        var host = model as ILayerHost
            ?? throw new NotSupportedException($"Quantize.Static works on a generated [Model] (layers by name); '{model.GetType().Name}' is not one.");
        model.eval();
        var folded = OptimizationPipeline.FoldBatchNorms(host, "");
        var observed = new List<(ILayerHost Host, string Name, string Path, ObservedLayer Layer)>();
        Prepare(host, "", observed);
        var quantized = new List<string>();
        if (observed.Count == 0) return new Result(folded, quantized);

        try
        {
            int batches = 0;
            using (no_grad())
            {
                foreach (var batch in calibration)
                {
                    using var scope = NewDisposeScope();
                    model.call(batch);
                    batches++;
                }
            }
            if (batches == 0)
                throw new ArgumentException("static quantisation needs at least one calibration batch", nameof(calibration));
            foreach (var (owner, name, path, layer) in observed)
            {
                if (!layer.Output.HasObserved)
                    throw new InvalidOperationException($"static quantisation: no calibration batch reached '{path}'");
            }
        }
        catch
        {
            foreach (var (owner, name, _, layer) in observed) owner.ReplaceLayer(name, layer.Inner);
            throw;
        }

        foreach (var (owner, name, path, layer) in observed)
        {
            var (inScale, inZero) = layer.Input.QParams();
            var (outScale, outZero) = layer.Output.QParams();
            var qparams = new StaticQParams(inScale, inZero, outScale, outZero, layer.FusedRelu);
            nn.Module<Tensor, Tensor> converted = layer.Inner switch
            {
                Conv2d conv => new StaticQuantizedConv2d(conv, qparams),
                Linear linear => new StaticQuantizedLinear(linear, qparams),
                var other => throw new InvalidOperationException($"static quantisation observed a {other.GetType().Name}"),
            };
            owner.ReplaceLayer(name, converted);
            quantized.Add(path);
        }
        foreach (var (_, _, _, layer) in observed) layer.DisposeObservers();
        return new Result(folded, quantized);
    }

    /// <summary>Whether static int8 converts this layer: a float32 Linear, or an ungrouped, zero-padded float32 Conv2d.</summary>
    internal static bool Converts(object layer) => layer switch
    {
        Linear linear => linear.GetType() == typeof(Linear) && linear.weight.dtype == ScalarType.Float32,
        Conv2d conv => conv.groups == 1 && conv.padding_mode == PaddingModes.Zeros && conv.weight.dtype == ScalarType.Float32
            && StaticQuantizedConv2d.SymmetricPadding(conv) is not null,
        _ => false,
    };

    /// <summary>Layers PyTorch runs on quantised tensors keeping their scale and zero point: a quantised run goes through them.</summary>
    private static bool KeepsQuantized(object layer) =>
        layer is MaxPool2d or Flatten or Dropout or ReLU or Identity or FoldedBatchNorm;

    private static void Prepare(ILayerHost host, string prefix, List<(ILayerHost, string, string, ObservedLayer)> observed)
    {
        var names = host.LayerNames;
        // Quantised activations flow from one layer to the next, and a ReLU fuses into its convolution, only where the
        // layers are a chain the generated forward runs in order. In a graph model (From, merges) each quantised
        // layer starts its own run: a layer's predecessor in the list need not be what it reads.
        bool chain = host.ForwardIsGenerated && !host.Summary.IsGraph;
        HistogramObserver? carried = null; // the output observer of the run's last quantised layer
        for (int i = 0; i < names.Count; i++)
        {
            var layer = host.GetLayer(names[i]);
            if (!chain) carried = null;
            // A Transformer block's slots run around attention, residuals and GELU: it stays float (docs/optimization.md).
            if (layer is TransformerBlock or TransformerLayer)
            {
                carried = null;
                continue;
            }
            if (layer is ILayerHost inner)
            {
                Prepare(inner, prefix + names[i] + ".", observed);
                carried = null;
            }
            else if (Converts(layer))
            {
                bool relu = chain && FollowedByRelu(host, names, i);
                var wrapper = new ObservedLayer((nn.Module<Tensor, Tensor>)layer, carried, relu);
                host.ReplaceLayer(names[i], wrapper);
                observed.Add((host, names[i], prefix + names[i], wrapper));
                carried = wrapper.Output;
            }
            else if (!KeepsQuantized(layer))
            {
                carried = null;
            }
        }
    }

    private static bool FollowedByRelu(ILayerHost host, IReadOnlyList<string> names, int i)
    {
        int next = i + 1;
        while (next < names.Count && host.GetLayer(names[next]) is FoldedBatchNorm) next++;
        return next < names.Count && host.GetLayer(names[next]) is ReLU;
    }

    /// <summary>
    /// A layer during calibration (PyTorch's prepared module): the float layer, its fused ReLU, the observer of its
    /// output and, at the start of a quantised run, the QuantStub's observer of its input.
    /// </summary>
    internal sealed class ObservedLayer : nn.Module<Tensor, Tensor>
    {
        private readonly bool _observesInput;

        public ObservedLayer(nn.Module<Tensor, Tensor> inner, HistogramObserver? carried, bool fusedRelu) : base(nameof(ObservedLayer))
        {
            Inner = inner;
            FusedRelu = fusedRelu;
            _observesInput = carried is null;
            Input = carried ?? new HistogramObserver();
            register_module("layer", inner);
        }

        public nn.Module<Tensor, Tensor> Inner { get; }
        public bool FusedRelu { get; }
        /// <summary>The observer whose parameters quantise this layer's input (its own, or the previous layer's output observer).</summary>
        public HistogramObserver Input { get; }
        public HistogramObserver Output { get; } = new();

        public override Tensor forward(Tensor input)
        {
            if (_observesInput) Input.Observe(input);
            var y = Inner.call(input);
            if (FusedRelu) y = nn.functional.relu(y);
            Output.Observe(y);
            return y;
        }

        public void DisposeObservers()
        {
            if (_observesInput) Input.Dispose();
            Output.Dispose();
        }
    }
}
