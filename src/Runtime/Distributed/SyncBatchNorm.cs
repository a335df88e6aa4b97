using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// Batch normalisation whose batch statistics are those of the whole global batch (all ranks), after PyTorch's
/// <c>torch.nn.SyncBatchNorm</c>: in training, the per-channel mean and variance are all-reduced across the ranks of
/// a <see cref="ProcessGroup"/>, so N ranks with batch B normalise exactly as one process with batch N·B, and the
/// running statistics (hence evaluation) match too. Without it each rank normalises by its own batch (PyTorch's
/// behaviour for plain BatchNorm under DDP).
/// </summary>
/// <remarks>
/// <para>It works on an existing <see cref="BatchNorm1d"/>/<see cref="BatchNorm2d"/>/<see cref="BatchNorm3d"/> module,
/// using its parameters and buffers, so a model's state-dict names do not change: a model's forward calls
/// <c>SyncBatchNorm.Forward(group, Norm1, x)</c> instead of <c>Norm1.forward(x)</c>.</para>
/// <para>The statistics are computed in two passes (mean, then the mean of squared deviations), each one all-reduce
/// of C values, through an autograd function whose backward all-reduces the gradient: that gives every rank the
/// gradient of the sum of all ranks' losses with respect to its own input, which is what PyTorch's SyncBatchNorm
/// backward computes with its all-reduced <c>sum_dy</c> and <c>sum_dy_xmu</c>. In evaluation, or in a group of one,
/// it is the module's own forward.</para>
/// </remarks>
public static class SyncBatchNorm
{
    /// <summary>Normalises <paramref name="input"/> (N, C, …) with statistics over every rank's batch.</summary>
    /// <param name="group">The ranks whose batches form the global batch.</param>
    /// <param name="norm">The BatchNorm module whose weight, bias and running statistics are used and updated.</param>
    /// <param name="input">This rank's batch, at least 2-D, channels in dimension 1.</param>
    /// <exception cref="ArgumentException">The input's channel count differs from the module's.</exception>
    public static Tensor Forward(ProcessGroup group, NormBase norm, Tensor input)
    {
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(norm);
        ArgumentNullException.ThrowIfNull(input);
        bool useBatchStatistics = norm.training || !norm.track_running_stats;
        if (group.WorldSize == 1 || !useBatchStatistics)
            return ((nn.Module<Tensor, Tensor>)norm).call(input);
        if (input.dim() < 2 || input.shape[1] != norm.num_features)
            throw new ArgumentException(
                $"SyncBatchNorm: expected input with {norm.num_features} channels in dimension 1, got shape [{string.Join(", ", input.shape)}].", nameof(input));

        long channels = input.shape[1];
        long[] reduceDims = Enumerable.Range(0, (int)input.dim()).Where(d => d != 1).Select(d => (long)d).ToArray();
        long[] statShape = Enumerable.Range(0, (int)input.dim()).Select(d => d == 1 ? channels : 1L).ToArray();

        // The global count (the batches may differ in size between ranks, e.g. the last batch of an epoch).
        long count;
        using (var local = tensor(new[] { input.numel() / channels }))
        {
            group.AllReduce(local, ReduceOp.Sum);
            count = local.item<long>();
        }
        if (count <= 1)
            throw new ArgumentException($"Expected more than 1 value per channel when training, got input size [{string.Join(", ", input.shape)}] over all ranks.", nameof(input));

        using var scope = NewDisposeScope();
        var sum = AllReduceSum.apply(input.sum(reduceDims), group);
        var mean = sum / count;
        var centered = input - mean.view(statShape);
        var squares = AllReduceSum.apply(centered.square().sum(reduceDims), group);
        var variance = squares / count;
        var output = centered * (variance + norm.eps).rsqrt().view(statShape);
        if (norm.affine)
            output = output * norm.weight!.view(statShape) + norm.bias!.view(statShape);

        if (norm.track_running_stats)
        {
            using var _ = no_grad();
            norm.num_batches_tracked!.add_(1);
            // momentum = None in PyTorch means a cumulative average.
            double momentum = norm.momentum ?? 1.0 / norm.num_batches_tracked.item<long>();
            norm.running_mean!.mul_(1 - momentum).add_(mean.detach(), alpha: momentum);
            // The running variance is the unbiased one, as in batch_norm_gather_stats_with_counts.
            norm.running_var!.mul_(1 - momentum).add_(variance.detach() * ((double)count / (count - 1)), alpha: momentum);
        }
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>Sum over ranks; its backward sums the gradients over ranks (the adjoint of a sum that every rank receives).</summary>
    private sealed class AllReduceSum : autograd.SingleTensorFunction<AllReduceSum>
    {
        public override string Name => nameof(AllReduceSum);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var group = (ProcessGroup)vars[1];
            ctx.save_data("group", group);
            var result = ((Tensor)vars[0]).detach().clone();
            group.AllReduce(result, ReduceOp.Sum);
            return result;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        {
            var group = (ProcessGroup)ctx.get_data("group");
            var grad = grad_output.clone();
            group.AllReduce(grad, ReduceOp.Sum);
            return new List<Tensor> { grad, null! };
        }
    }
}
