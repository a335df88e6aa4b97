using TorchSharp.Modules;

namespace ModelDsl.Runtime.Pruning;

// Structural pruning (PruneMethod.Structured): whole output neurons or channels are removed and the consumer is
// rewritten, so the model really gets smaller and faster. PyTorch has no counterpart (its structured methods only
// zero rows); the ranking is ln_structured's with n = 2 along the output dimension, and the result equals the
// masked model whose pruned neurons have weight rows, biases (and BatchNorm affine entries) zeroed.
public static partial class Prune
{
    /// <summary>
    /// The output channels (dimension 0 of <paramref name="weight"/>) that structural pruning keeps: all but the
    /// <paramref name="amount"/> with the smallest L2 norm over the other dimensions (the ranking of
    /// <see cref="LnStructured{T}(T, string, PruneAmount, double, long)"/> with <c>n = 2, dim = 0</c>; a fraction
    /// rounds half to even; among equal norms the lower index goes first). Ascending order.
    /// </summary>
    /// <param name="weight">A weight with output channels along dimension 0 (Linear: [out, in]; Conv2d: [out, in, kh, kw]).</param>
    /// <param name="amount">The fraction (a <c>double</c> in [0, 1]) or count (an <c>int</c>) of channels to remove.</param>
    public static long[] ChannelsToKeep(Tensor weight, PruneAmount amount) => ChannelsToKeep(new[] { weight }, amount, 2);

    /// <summary>
    /// The output channels a dependency group keeps (channels cut together, Torch-Pruning's DepGraph): a channel's
    /// importance is the sum over <paramref name="weights"/> (the group's producers, each with the group's channels
    /// along dimension 0) of its L<paramref name="n"/> norm over the other dimensions; the
    /// <paramref name="amount"/> least important go (a fraction rounds half to even; among equal importances the
    /// lower index goes first). With one weight and n = 2 this is <see cref="ChannelsToKeep(Tensor, PruneAmount)"/>.
    /// Ascending order.
    /// </summary>
    /// <param name="weights">The producers' weights, each with the same size along dimension 0.</param>
    /// <param name="amount">The fraction (a <c>double</c> in [0, 1]) or count (an <c>int</c>) of channels to remove.</param>
    /// <param name="n">The norm's order (1, 2, or <see cref="double.PositiveInfinity"/>).</param>
    public static long[] ChannelsToKeep(IReadOnlyList<Tensor> weights, PruneAmount amount, double n)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Count == 0) throw new ArgumentException("A group has at least one producer weight.", nameof(weights));
        foreach (var w in weights) StructuredChecks.ValidateMultidimensional(w);
        long size = weights[0].shape[0];
        if (weights.Any(w => w.shape[0] != size))
            throw new ArgumentException($"The group's weights must have the same number of output channels; got [{string.Join(", ", weights.Select(w => w.shape[0]))}].", nameof(weights));
        long k = amount.ToPrune(size);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        Tensor? norms = null;
        foreach (var weight in weights)
        {
            var others = Enumerable.Range(1, (int)weight.dim() - 1).Select(d => (long)d).ToArray();
            var norm = linalg.vector_norm(weight.detach(), n, others, keepdim: false);
            norms = norms is null ? norm : norms + norm;
        }
        var (_, order) = norms!.sort(0, descending: false, stable: true);
        var pruned = new HashSet<long>(order.slice(0, 0, k, 1).data<long>().ToArray());
        return Enumerable.Range(0, (int)size).Select(i => (long)i).Where(i => !pruned.Contains(i)).ToArray();
    }

    /// <summary>
    /// Removes the <paramref name="amount"/> fraction of <paramref name="producer"/>'s output neurons with the
    /// smallest weight-row L2 norm, and the matching input columns of <paramref name="consumer"/>. Returns new,
    /// smaller modules (the originals are not changed). Whatever runs between the two must be elementwise
    /// (activations, dropout): the removed neurons' constant bias contribution is dropped with them.
    /// </summary>
    /// <param name="producer">The Linear whose outputs are removed.</param>
    /// <param name="consumer">The Linear that reads them; its in_features must equal the producer's out_features.</param>
    /// <param name="amount">The fraction (a <c>double</c> in [0, 1]) or count (an <c>int</c>) of neurons to remove.</param>
    public static (Linear Producer, Linear Consumer) ShrinkLinearOutputs(Linear producer, Linear consumer, PruneAmount amount)
    {
        ArgumentNullException.ThrowIfNull(producer);
        return ShrinkLinearOutputs(producer, consumer, ChannelsToKeep(producer.weight, amount));
    }

    /// <summary>Keeps exactly the output neurons <paramref name="keep"/> of <paramref name="producer"/> (ascending, distinct).</summary>
    /// <param name="producer">The Linear whose outputs are removed.</param>
    /// <param name="consumer">The Linear that reads them.</param>
    /// <param name="keep">The output indices to keep.</param>
    public static (Linear Producer, Linear Consumer) ShrinkLinearOutputs(Linear producer, Linear consumer, long[] keep)
    {
        ArgumentNullException.ThrowIfNull(producer);
        ArgumentNullException.ThrowIfNull(consumer);
        CheckShrinkable(producer, nameof(producer));
        CheckShrinkable(consumer, nameof(consumer));
        if (consumer.in_features != producer.out_features)
            throw new ArgumentException(
                $"The consumer reads {consumer.in_features} features but the producer makes {producer.out_features}; " +
                "ShrinkLinearOutputs rewrites a Linear that directly consumes the producer's outputs.", nameof(consumer));
        CheckKeep(keep, producer.out_features);

        var newProducer = (Linear)KeepOutputs(producer, keep);
        var newConsumer = (Linear)KeepInputs(consumer, keep);
        return (newProducer, newConsumer);
    }

    /// <summary>
    /// Removes the <paramref name="amount"/> fraction of <paramref name="producer"/>'s output channels with the
    /// smallest filter L2 norm, the same channels of the BatchNorm2d that follows it (if any), and the matching
    /// input channels of the consumer convolution. Returns new modules. Between norm and consumer only
    /// channel-wise operations may run (activations, pooling, dropout).
    /// </summary>
    /// <param name="producer">The Conv2d whose output channels are removed (not grouped).</param>
    /// <param name="norm">The BatchNorm2d over the producer's output, or <c>null</c>.</param>
    /// <param name="consumer">The Conv2d that reads the channels (not grouped).</param>
    /// <param name="amount">The fraction (a <c>double</c> in [0, 1]) or count (an <c>int</c>) of channels to remove.</param>
    public static (Conv2d Producer, BatchNorm2d? Norm, Conv2d Consumer) ShrinkConv2dOutputs(Conv2d producer, BatchNorm2d? norm, Conv2d consumer, PruneAmount amount)
    {
        ArgumentNullException.ThrowIfNull(producer);
        return ShrinkConv2dOutputs(producer, norm, consumer, ChannelsToKeep(producer.weight, amount));
    }

    /// <summary>Keeps exactly the output channels <paramref name="keep"/> (ascending, distinct).</summary>
    /// <param name="producer">The Conv2d whose output channels are removed.</param>
    /// <param name="norm">The BatchNorm2d over the producer's output, or <c>null</c>.</param>
    /// <param name="consumer">The Conv2d that reads the channels.</param>
    /// <param name="keep">The channel indices to keep.</param>
    public static (Conv2d Producer, BatchNorm2d? Norm, Conv2d Consumer) ShrinkConv2dOutputs(Conv2d producer, BatchNorm2d? norm, Conv2d consumer, long[] keep)
    {
        ArgumentNullException.ThrowIfNull(consumer);
        CheckShrinkable(consumer, nameof(consumer));
        CheckUngrouped(consumer, nameof(consumer));
        if (consumer.in_channels != producer.out_channels)
            throw new ArgumentException(
                $"The consumer reads {consumer.in_channels} channels but the producer makes {producer.out_channels}.", nameof(consumer));
        var (newProducer, newNorm) = ShrinkConvAndNorm(producer, norm, keep);
        var newConsumer = (Conv2d)KeepInputs(consumer, keep);
        return (newProducer, newNorm, newConsumer);
    }

    /// <summary>
    /// As <see cref="ShrinkConv2dOutputs(Conv2d, BatchNorm2d?, Conv2d, PruneAmount)"/>, for a producer whose output is
    /// flattened into a Linear (<c>Flatten</c> after channel-wise layers): each channel owns
    /// <c>in_features / out_channels</c> consecutive input features of the consumer.
    /// </summary>
    /// <param name="producer">The Conv2d whose output channels are removed.</param>
    /// <param name="norm">The BatchNorm2d over the producer's output, or <c>null</c>.</param>
    /// <param name="consumer">The Linear that reads the flattened channels.</param>
    /// <param name="amount">The fraction (a <c>double</c> in [0, 1]) or count (an <c>int</c>) of channels to remove.</param>
    public static (Conv2d Producer, BatchNorm2d? Norm, Linear Consumer) ShrinkConv2dOutputs(Conv2d producer, BatchNorm2d? norm, Linear consumer, PruneAmount amount)
    {
        ArgumentNullException.ThrowIfNull(producer);
        return ShrinkConv2dOutputs(producer, norm, consumer, ChannelsToKeep(producer.weight, amount));
    }

    /// <summary>Keeps exactly the output channels <paramref name="keep"/>; the consumer reads them flattened.</summary>
    /// <param name="producer">The Conv2d whose output channels are removed.</param>
    /// <param name="norm">The BatchNorm2d over the producer's output, or <c>null</c>.</param>
    /// <param name="consumer">The Linear that reads the flattened channels.</param>
    /// <param name="keep">The channel indices to keep.</param>
    public static (Conv2d Producer, BatchNorm2d? Norm, Linear Consumer) ShrinkConv2dOutputs(Conv2d producer, BatchNorm2d? norm, Linear consumer, long[] keep)
    {
        ArgumentNullException.ThrowIfNull(producer);
        ArgumentNullException.ThrowIfNull(consumer);
        CheckShrinkable(consumer, nameof(consumer));
        long channels = producer.out_channels;
        if (consumer.in_features % channels != 0)
            throw new ArgumentException(
                $"The consumer reads {consumer.in_features} features, not a multiple of the producer's {channels} channels; " +
                "it must read the producer's output flattened.", nameof(consumer));
        long perChannel = consumer.in_features / channels;
        var (newProducer, newNorm) = ShrinkConvAndNorm(producer, norm, keep);
        var newConsumer = (Linear)KeepInputs(consumer, keep.SelectMany(c => Enumerable.Range(0, (int)perChannel).Select(j => c * perChannel + j)).ToArray());
        return (newProducer, newNorm, newConsumer);
    }

    private static (Conv2d Producer, BatchNorm2d? Norm) ShrinkConvAndNorm(Conv2d producer, BatchNorm2d? norm, long[] keep)
    {
        ArgumentNullException.ThrowIfNull(producer);
        CheckShrinkable(producer, nameof(producer));
        CheckUngrouped(producer, nameof(producer));
        CheckKeep(keep, producer.out_channels);
        if (norm is not null)
        {
            CheckShrinkable(norm, nameof(norm));
            if (norm.num_features != producer.out_channels)
                throw new ArgumentException($"The BatchNorm2d has {norm.num_features} features but the producer makes {producer.out_channels} channels.", nameof(norm));
        }

        return ((Conv2d)KeepOutputs(producer, keep), norm is null ? null : KeepChannels(norm, keep));
    }

    /// <summary>A copy of a Linear or Conv2d with only the outputs <paramref name="keep"/> (weight rows, bias entries).</summary>
    internal static nn.Module<Tensor, Tensor> KeepOutputs(object layer, long[] keep)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        switch (layer)
        {
            case Linear linear:
            {
                var index = tensor(keep, device: linear.weight.device);
                var copy = nn.Linear(linear.in_features, keep.Length, linear.bias is not null, linear.weight.device, linear.weight.dtype);
                copy.weight.copy_(linear.weight.index_select(0, index));
                copy.bias?.copy_(linear.bias!.index_select(0, index));
                copy.train(linear.training);
                return copy;
            }
            case Conv2d conv:
            {
                var index = tensor(keep, device: conv.weight.device);
                var copy = CopyConv(conv, conv.in_channels, keep.Length);
                copy.weight.copy_(conv.weight.index_select(0, index));
                copy.bias?.copy_(conv.bias!.index_select(0, index));
                copy.train(conv.training);
                return copy;
            }
            default: throw new NotSupportedException($"Structured pruning removes the outputs of a Linear or Conv2d, not of {layer.GetType().Name}.");
        }
    }

    /// <summary>A copy of a Linear or Conv2d that reads only its inputs <paramref name="keep"/> (weight columns; the bias stays).</summary>
    internal static nn.Module<Tensor, Tensor> KeepInputs(object layer, long[] keep)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        switch (layer)
        {
            case Linear linear:
            {
                var copy = nn.Linear(keep.Length, linear.out_features, linear.bias is not null, linear.weight.device, linear.weight.dtype);
                copy.weight.copy_(linear.weight.index_select(1, tensor(keep, device: linear.weight.device)));
                copy.bias?.copy_(linear.bias!);
                copy.train(linear.training);
                return copy;
            }
            case Conv2d conv:
            {
                var copy = CopyConv(conv, keep.Length, conv.out_channels);
                copy.weight.copy_(conv.weight.index_select(1, tensor(keep, device: conv.weight.device)));
                copy.bias?.copy_(conv.bias!);
                copy.train(conv.training);
                return copy;
            }
            default: throw new NotSupportedException($"Structured pruning rewrites the inputs of a Linear or Conv2d, not of {layer.GetType().Name}.");
        }
    }

    /// <summary>A copy of a BatchNorm2d with only the channels <paramref name="keep"/> (affine entries and running statistics).</summary>
    internal static BatchNorm2d KeepChannels(BatchNorm2d norm, long[] keep)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var device = (norm.running_mean ?? norm.weight)?.device ?? CPU;
        var dtype = (norm.running_mean ?? norm.weight)?.dtype ?? ScalarType.Float32;
        var index = tensor(keep, device: device);
        var copy = nn.BatchNorm2d(keep.Length, norm.eps, norm.momentum ?? 0.1, norm.affine, norm.track_running_stats, device, dtype);
        copy.momentum = norm.momentum;
        copy.weight?.copy_(norm.weight!.index_select(0, index));
        copy.bias?.copy_(norm.bias!.index_select(0, index));
        copy.running_mean?.copy_(norm.running_mean!.index_select(0, index));
        copy.running_var?.copy_(norm.running_var!.index_select(0, index));
        copy.num_batches_tracked?.copy_(norm.num_batches_tracked!);
        copy.train(norm.training);
        return copy;
    }

    internal static Conv2d CopyConv(Conv2d source, long inChannels, long outChannels, bool? bias = null)
    {
        var w = source.weight;
        bool hasBias = bias ?? source.bias is not null;
        var kernel = (source.kernel_size[0], source.kernel_size[1]);
        var stride = (source.stride[0], source.stride[1]);
        var dilation = (source.dilation[0], source.dilation[1]);
        return source.padding_type is { } padding
            ? nn.Conv2d(inChannels, outChannels, kernel, padding, stride, dilation, source.padding_mode, 1, hasBias, w.device, w.dtype)
            : nn.Conv2d(inChannels, outChannels, kernel, stride, (source.padding![0], source.padding[1]), dilation, source.padding_mode, 1, hasBias, w.device, w.dtype);
    }

    private static void CheckShrinkable(nn.Module module, string parameter)
    {
        if (IsPruned(module))
            throw new InvalidOperationException(
                $"{Describe(module)} ('{parameter}') carries pruning masks; call Prune.Remove on it first, so that the weights to keep are final.");
    }

    private static void CheckUngrouped(Conv2d conv, string parameter)
    {
        if (conv.groups != 1)
            throw new NotSupportedException(
                $"{Describe(conv)} ('{parameter}') is grouped (groups={conv.groups}); removing channels from a grouped convolution would change its groups.");
    }

    private static void CheckKeep(long[] keep, long size)
    {
        ArgumentNullException.ThrowIfNull(keep);
        if (keep.Length == 0)
            throw new ArgumentException("Structural pruning must keep at least one channel; removing all of them would disconnect the consumer.", nameof(keep));
        for (int i = 0; i < keep.Length; i++)
        {
            if (keep[i] < 0 || keep[i] >= size || (i > 0 && keep[i] <= keep[i - 1]))
                throw new ArgumentException($"Channels to keep must be ascending, distinct and in [0, {size}); got [{string.Join(", ", keep)}].", nameof(keep));
        }
    }
}
