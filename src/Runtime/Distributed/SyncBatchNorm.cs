using TorchSharp.Modules;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// PyTorch's <c>SyncBatchNorm</c>: in training, the batch mean and variance are taken over the whole global batch
/// (every rank's samples), so N ranks at batch b normalise exactly as one process at batch N·b; in evaluation it is
/// the BatchNorm it replaced. It takes over that layer's parameters and buffers (the same tensors, so the optimiser
/// and the state dict are unchanged).
/// </summary>
/// <remarks>
/// The statistics are exact two-pass ones: an all-reduce of the per-channel sums and counts gives the mean, a
/// second of the squared deviations the (biased) variance, as a single process computes them. Both all-reduces are
/// differentiable (their backward all-reduces the gradient), so each rank's input gradient includes what its samples
/// contributed to every rank's loss through the shared statistics. Running statistics use the unbiased variance and
/// the layer's momentum, as <c>nn.BatchNorm</c> does.
/// </remarks>
public sealed class SyncBatchNorm : nn.Module<Tensor, Tensor>
{
    private readonly ProcessGroup _group;
    private readonly Parameter? _weight;
    private readonly Parameter? _bias;
    private readonly Tensor _runningMean;
    private readonly Tensor _runningVar;
    private readonly Tensor? _batches;
    private readonly double _eps;
    private readonly double _momentum;
    private readonly bool _twoD;

    /// <summary>Wraps <paramref name="source"/> (a <c>BatchNorm1d</c> or <c>BatchNorm2d</c>) for the ranks of <paramref name="group"/>.</summary>
    public SyncBatchNorm(ProcessGroup group, nn.Module<Tensor, Tensor> source) : base(nameof(SyncBatchNorm))
    {
        _group = group ?? throw new ArgumentNullException(nameof(group));
        _twoD = source is BatchNorm2d;
        (_eps, _momentum) = source switch
        {
            BatchNorm1d b => (b.eps, b.momentum ?? 0.1),
            BatchNorm2d b => (b.eps, b.momentum ?? 0.1),
            _ => throw new ArgumentException($"SyncBatchNorm replaces BatchNorm1d or BatchNorm2d, not {source.GetType().Name}", nameof(source)),
        };
        var parameters = source.named_parameters(recurse: false).ToDictionary(p => p.name, p => p.parameter);
        var buffers = source.named_buffers(recurse: false).ToDictionary(b => b.name, b => b.buffer);
        _weight = parameters.GetValueOrDefault("weight");
        _bias = parameters.GetValueOrDefault("bias");
        _runningMean = buffers["running_mean"];
        _runningVar = buffers["running_var"];
        _batches = buffers.GetValueOrDefault("num_batches_tracked");
        // The same names as the BatchNorm, so checkpoints and state dicts do not see the swap.
        foreach (var (name, p) in parameters) register_parameter(name, p);
        foreach (var (name, b) in buffers) register_buffer(name, b);
        if (!source.training) eval();
        // This layer owns those tensors now. TorchSharp's BatchNorm (NormBase) disposes its weight, bias and running
        // statistics in Dispose(bool) whatever the argument, so its finalizer would free them once the replaced
        // layer is garbage (Convert drops it): at a GC-dependent moment, leaving this layer, the optimiser and
        // ToBatchNorm with empty handles. Its native handle is a SafeHandle with its own finalizer; an explicit
        // Dispose of the source still works as before.
        GC.SuppressFinalize(source);
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        if (!training)
            return nn.functional.batch_norm(input, _runningMean, _runningVar, _weight, _bias, false, _momentum, _eps);

        long channels = input.shape[1];
        var dims = Enumerable.Range(0, (int)input.dim()).Where(d => d != 1).Select(d => (long)d).ToArray();
        var shape = Enumerable.Repeat(1L, (int)input.dim()).ToArray();
        shape[1] = channels;
        long localCount = input.numel() / Math.Max(1, channels);

        // Pass 1: global per-channel sums and the global count give the mean.
        using var count = full(1, localCount, dtype: input.dtype, device: input.device);
        var sums = AllReduceSum.apply(cat(new[] { input.sum(dims), count }), _group);
        var n = sums[channels].detach();
        var mean = sums.narrow(0, 0, channels) / n;
        // Pass 2: global squared deviations from that mean give the biased variance.
        var centered = input - mean.view(shape);
        var variance = AllReduceSum.apply(centered.square().sum(dims), _group) / n;

        using (no_grad())
        {
            double total = n.to_type(ScalarType.Float64).item<double>();
            _runningMean.mul_(1 - _momentum).add_(mean.detach(), alpha: _momentum);
            _runningVar.mul_(1 - _momentum).add_(variance.detach() * (total / Math.Max(1, total - 1)), alpha: _momentum);
            _batches?.add_(1);
        }

        var output = centered * (variance + _eps).rsqrt().view(shape);
        if (_weight is not null) output = output * _weight.view(shape);
        if (_bias is not null) output = output + _bias.view(shape);
        return output;
    }

    /// <summary>
    /// The plain BatchNorm1d or BatchNorm2d this layer replaced, with copies of its parameters and running
    /// statistics: what the optimisation plan cuts and folds.
    /// </summary>
    public nn.Module<Tensor, Tensor> ToBatchNorm()
    {
        long features = _runningMean.shape[0];
        nn.Module<Tensor, Tensor> norm = _twoD
            ? nn.BatchNorm2d(features, _eps, _momentum, _weight is not null, true, _runningMean.device, _runningMean.dtype)
            : nn.BatchNorm1d(features, _eps, _momentum, _weight is not null, true, _runningMean.device, _runningMean.dtype);
        using (torch.no_grad())
        {
            var target = norm.state_dict();
            foreach (var (name, tensor) in state_dict()) target[name].copy_(tensor);
        }
        norm.train(training);
        return norm;
    }

    /// <summary>
    /// Replaces every top-level BatchNorm layer of a generated model with a <see cref="SyncBatchNorm"/>; returns their
    /// names. BatchNorm layers inside a composed model keep per-rank statistics.
    /// </summary>
    public static IReadOnlyList<string> Convert(ProcessGroup group, nn.Module model)
    {
        if (model is not ILayerHost host) return Array.Empty<string>();
        var converted = new List<string>();
        foreach (var name in host.LayerNames)
        {
            if (host.GetLayer(name) is BatchNorm1d or BatchNorm2d)
            {
                host.ReplaceLayer(name, new SyncBatchNorm(group, (nn.Module<Tensor, Tensor>)host.GetLayer(name)));
                converted.Add(name);
            }
        }
        return converted;
    }

    /// <summary>All-reduce (sum) as an autograd function: its backward all-reduces the gradient.</summary>
    private sealed class AllReduceSum : autograd.SingleTensorFunction<AllReduceSum>
    {
        public override string Name => nameof(AllReduceSum);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var group = (ProcessGroup)vars[1];
            ctx.save_data("group", group);
            var result = ((Tensor)vars[0]).clone();
            group.AllReduce(result, ReduceOp.Sum);
            return result;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        {
            var grad = grad_output.clone();
            ((ProcessGroup)ctx.get_data("group")).AllReduce(grad, ReduceOp.Sum);
            return new List<Tensor> { grad, null! };
        }
    }
}
