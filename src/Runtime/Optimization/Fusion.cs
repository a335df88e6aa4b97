using ModelDsl.Runtime.Pruning;
using TorchSharp.Modules;

namespace ModelDsl.Runtime.Optimization
{
    /// <summary>
    /// <c>torch.nn.utils.fusion</c>: a BatchNorm in eval mode folded into the Conv2d or Linear before it, so inference
    /// runs one layer instead of two. Exact up to float rounding (PyTorch 1.13's formulas, in float32):
    /// <c>w' = w · (γ · rsqrt(var + eps))</c> per output channel, <c>b' = (b − mean) · rsqrt(var + eps) · γ + β</c>
    /// (a missing bias counts as 0, a BatchNorm without affine as γ = 1, β = 0).
    /// </summary>
    public static class Fusion
    {
        /// <summary><c>fuse_conv_bn_eval</c>: a new Conv2d (with a bias) computing <c>bn(conv(x))</c> of the eval-mode pair.</summary>
        /// <param name="conv">The convolution; its output channels must be the BatchNorm's features.</param>
        /// <param name="bn">The BatchNorm2d that follows it, with running statistics.</param>
        public static Conv2d FuseConvBnEval(Conv2d conv, BatchNorm2d bn)
        {
            ArgumentNullException.ThrowIfNull(conv);
            ArgumentNullException.ThrowIfNull(bn);
            if (conv.training || bn.training)
                throw new ArgumentException("Fusion only for eval!");
            var fused = Prune.CopyConv(conv, conv.in_channels, conv.out_channels, bias: true);
            FuseWeights(conv.weight, conv.bias, bn, fused.weight, fused.bias!);
            fused.eval();
            return fused;
        }

        /// <summary><c>fuse_linear_bn_eval</c>: a new Linear (with a bias) computing <c>bn(linear(x))</c> of the eval-mode pair.</summary>
        /// <param name="linear">The Linear; its out_features must be the BatchNorm's features.</param>
        /// <param name="bn">The BatchNorm1d that follows it, with running statistics.</param>
        public static Linear FuseLinearBnEval(Linear linear, BatchNorm1d bn)
        {
            ArgumentNullException.ThrowIfNull(linear);
            ArgumentNullException.ThrowIfNull(bn);
            if (linear.training || bn.training)
                throw new ArgumentException("Fusion only for eval!");
            var w = linear.weight;
            var fused = nn.Linear(w.shape[1], w.shape[0], hasBias: true, device: w.device, dtype: w.dtype);
            FuseWeights(w, linear.bias, bn, fused.weight, fused.bias!);
            fused.eval();
            return fused;
        }

        private static void FuseWeights(Tensor weight, Tensor? bias, nn.Module bn, Tensor fusedWeight, Tensor fusedBias)
        {
            var (runningMean, runningVar, gamma, beta, eps, features) = bn switch
            {
                BatchNorm2d b => (b.running_mean, b.running_var, b.weight, b.bias, b.eps, b.num_features),
                BatchNorm1d b => (b.running_mean, b.running_var, b.weight, b.bias, b.eps, b.num_features),
                _ => throw new ArgumentException($"not a BatchNorm: {bn.GetType().Name}", nameof(bn)),
            };
            if (runningMean is null || runningVar is null)
                throw new ArgumentException("a BatchNorm without running statistics (track_running_stats=False) cannot be folded", nameof(bn));
            if (weight.shape[0] != features)
                throw new ArgumentException($"the layer has {weight.shape[0]} outputs but the BatchNorm {features} features", nameof(bn));

            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var rsqrt = (runningVar + eps).rsqrt();
            var scale = gamma is null ? rsqrt : gamma * rsqrt;
            var shape = new long[weight.dim()];
            Array.Fill(shape, 1L);
            shape[0] = -1;
            fusedWeight.copy_(weight * scale.reshape(shape));
            var shifted = ((bias ?? zeros_like(runningMean)) - runningMean) * rsqrt;
            shifted = gamma is null ? shifted : shifted * gamma;
            fusedBias.copy_(beta is null ? shifted : shifted + beta);
        }
    }
}
