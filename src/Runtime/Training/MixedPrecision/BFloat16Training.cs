using System;
using System.Collections.Generic;
using System.Linq;
using ModelDsl.Shapes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Training.MixedPrecision
{
    /// <summary>
    /// Mixed-precision training with float32 master weights: forward and backward run on a working copy of the model
    /// whose matrix-product layers hold bfloat16 weights, and the gradients go back to the master model, which the
    /// optimiser steps in float32. TorchSharp has no <c>autocast</c>, so the copy is cast per layer by the policy PyTorch's
    /// CPU autocast applies per op (<see cref="LayerKind.Autocast"/>): <c>Linear</c> runs in bfloat16, its input cast on
    /// the way in and its output left in bfloat16 (so a GELU or an attention between two of them runs in bfloat16, as
    /// under autocast); norms and softmax run in float32, their input cast up, and so do convolutions (libtorch 2.10's
    /// bfloat16 convolution is wrong on the CPU measured: see <c>ConvKind</c>); every other layer (activations, pooling,
    /// embeddings, recurrent layers) runs in the dtype it is given, with float32 weights.
    /// A residual sum of a float32 stream and a bfloat16 branch is float32, as under autocast. The output is cast to
    /// float32 for the loss.
    /// </summary>
    /// <remarks>
    /// Per optimiser step the master weights are copied (cast) into the working copy once; after each backward the
    /// copy's gradients are added to the master's <c>.grad</c> in float32 and zeroed, so gradient accumulation sums in
    /// float32 and data-parallel strategies reduce float32 gradients on the master as in a float32 run; after the
    /// optimiser's step the master's gradients are freed, so between steps a rank holds ZeRO's mixed-precision layout
    /// (the working copy's weights and gradients, the float32 master and the optimiser's state). Sharding strategies
    /// reduce the working copy's gradients themselves (<see cref="WeightsSharded"/>). BatchNorm's
    /// running statistics, updated by the copy's forward, are copied back to the master, which validation, checkpoints
    /// and the optimisation passes use. Parameters are paired by module path, so a weight tied between an embedding
    /// (float32 in the copy) and a Linear head (bfloat16 in the copy) gets the sum of both uses' gradients.
    /// </remarks>
    public sealed class BFloat16Training : ITrainingPrecision
    {
        private readonly nn.Module<Tensor, Tensor> _working;
        private readonly nn.Module<Tensor, Tensor> _master;
        private readonly (nn.Module Master, nn.Module Working)[] _modules;
        private readonly (Tensor Master, Tensor Working)[] _parameters;
        private readonly (Tensor Master, Tensor Working)[] _buffers;
        private readonly List<Action> _removeHooks = new();

        /// <summary>Makes <paramref name="working"/> (a model of the master's class, on its device) the bfloat16 working copy of <paramref name="master"/>.</summary>
        public BFloat16Training(nn.Module<Tensor, Tensor> master, nn.Module<Tensor, Tensor> working)
        {
            (_master, _working) = (master, working);
            var workingModules = working.named_modules().ToDictionary(m => m.name, m => m.module);
            _modules = new (nn.Module, nn.Module)[] { (master, working) }
                .Concat(master.named_modules().Select(m => (m.module, workingModules.TryGetValue(m.name, out var w) ? w
                    : throw new ArgumentException($"the working copy has no module '{m.name}': it must be a model of the master's class", nameof(working)))))
                .ToArray();
            foreach (var (_, module) in _modules)
                if (!module.children().Any()) Cast(module);

            // Pairs taken after the cast: the cast replaced the bfloat16 layers' parameters. Distinct by the working
            // tensor: a tie the cast kept is one working tensor, its gradient added once.
            var parameters = new List<(Tensor, Tensor)>();
            var buffers = new List<(Tensor, Tensor)>();
            var seen = new HashSet<IntPtr>();
            foreach (var (m, w) in _modules)
            {
                var own = w.named_parameters(recurse: false).ToDictionary(p => p.name, p => (Tensor)p.parameter);
                foreach (var (name, p) in m.named_parameters(recurse: false))
                    if (p.requires_grad && own.TryGetValue(name, out var copy) && seen.Add(copy.Handle)) parameters.Add((p, copy));
                var ownBuffers = w.named_buffers(recurse: false).ToDictionary(b => b.name, b => b.buffer);
                foreach (var (name, b) in m.named_buffers(recurse: false))
                    if (ownBuffers.TryGetValue(name, out var copy)) buffers.Add((b, copy));
            }
            (_parameters, _buffers) = (parameters.ToArray(), buffers.ToArray());
        }

        /// <inheritdoc/>
        public string Name => "bf16";

        /// <inheritdoc/>
        public nn.Module<Tensor, Tensor> Module => _working;

        /// <summary>The model whose float32 parameters the optimiser steps.</summary>
        public nn.Module<Tensor, Tensor> Master => _master;

        /// <summary>
        /// Each trained master parameter with its working copy, paired by module path: a weight tied between a layer the
        /// copy runs in bfloat16 and one it runs in float32 appears twice (two working tensors, one master).
        /// </summary>
        public IReadOnlyList<(Tensor Master, Tensor Working)> Parameters => _parameters;

        /// <summary>
        /// Set by a sharding strategy that keeps ZeRO's mixed-precision layout itself
        /// (<see cref="ModelDsl.Runtime.Distributed.ShardedDataParallelStrategy"/> at stage 3): it refreshes the working
        /// weights from the master partition it owns and reduces the working copy's gradients, so <see cref="Forward"/>
        /// copies only the buffers (and zeroes the working gradients the last step kept) and
        /// <see cref="CollectGradients"/> leaves the gradients where backward put them (micro-batches of one step then
        /// add up in the working dtype).
        /// </summary>
        public bool WeightsSharded { get; set; }

        /// <summary>How many of the working copy's parameters are bfloat16, of all it trains (a test's view).</summary>
        public (int BFloat16, int All) ParameterDtypes => (_parameters.Count(p => p.Working.dtype == ScalarType.BFloat16), _parameters.Length);

        /// <inheritdoc/>
        public Tensor Forward(Tensor x, bool weightsChanged)
        {
            if (weightsChanged)
                using (torch.no_grad())
                {
                    if (!WeightsSharded)
                        foreach (var (master, working) in _parameters) working.copy_(master);
                    else
                        foreach (var (_, working) in _parameters)
                        {
                            using var kept = working.grad;
                            kept?.zero_();
                        }
                    foreach (var (master, working) in _buffers) working.copy_(master);
                }
            // The loop sets train/eval (and dropout off under --deterministic) on the master: the copy follows, parents
            // first, so a child's own mode wins.
            foreach (var (master, working) in _modules)
                if (working.training != master.training) working.train(master.training);
            var output = _working.call(x);
            if (_working.training)
                using (torch.no_grad())
                    foreach (var (master, working) in _buffers) master.copy_(working);
            return output.dtype == ScalarType.BFloat16 ? output.to(ScalarType.Float32) : output;
        }

        /// <inheritdoc/>
        public void CollectGradients()
        {
            if (WeightsSharded) return;
            using var noGrad = torch.no_grad();
            foreach (var (master, working) in _parameters)
            {
                using var grad = working.grad;
                if (grad is null) continue;
                using var sum = master.grad;
                if (sum is null)
                {
                    // The parameter keeps its own reference; the wrapper goes now, not at the finalizer.
                    using var copy = grad.to(ScalarType.Float32, copy: true);
                    master.grad = copy;
                }
                else sum.add_(grad);
                grad.zero_();
            }
        }

        /// <summary>
        /// Frees the master's float32 gradients: they exist for the optimiser's step only (ZeRO's layout keeps the working
        /// copy's gradients, 2 bytes per bfloat16 parameter, not 4 more on the master); the next step's
        /// <see cref="CollectGradients"/> allocates them again.
        /// </summary>
        public void AfterOptimizerStep()
        {
            foreach (var (master, _) in _parameters) master.grad = null;
        }

        /// <summary>Casts one leaf layer of the copy by its kind's autocast policy.</summary>
        private void Cast(nn.Module module)
        {
            if (module is not nn.Module<Tensor, Tensor> layer) return;
            switch (LayerKind.ForModule(module.GetType().FullName)?.Autocast)
            {
                case AutocastPolicy.BFloat16:
                    module.to(ScalarType.BFloat16);
                    _removeHooks.Add(layer.register_forward_pre_hook((_, input) => To(input, ScalarType.BFloat16)).remove);
                    break;
                case AutocastPolicy.Float32:
                    _removeHooks.Add(layer.register_forward_pre_hook((_, input) => To(input, ScalarType.Float32)).remove);
                    break;
            }
        }

        /// <summary>A floating-point input in <paramref name="dtype"/>; integer ids pass unchanged.</summary>
        private static Tensor To(Tensor input, ScalarType dtype) =>
            input.dtype == dtype || !input.is_floating_point() ? input : input.to(dtype);

        /// <summary>Removes the hooks and frees the working copy.</summary>
        public void Dispose()
        {
            foreach (var remove in _removeHooks) remove();
            _working.Dispose();
        }
    }
}
