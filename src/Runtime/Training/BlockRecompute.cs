using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.CompilerServices;
using ModelDsl.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// Activation recomputation per block (<c>[Train(Recompute = Recompute.Blocks)]</c>, <c>--recompute blocks</c>), as
    /// PyTorch's <c>torch.utils.checkpoint</c> with <c>preserve_rng_state=True</c>: a block's forward runs under no-grad
    /// and keeps only its input; backward runs the block's forward again with grad enabled on a detached copy of that
    /// input and backpropagates the incoming gradient through it. The blocks are each layer of a
    /// <see cref="TransformerBlock"/>, each copy of a repeated <c>[Block]</c> (<see cref="Repeated"/>) and each composed
    /// <c>[Block]</c> of a generated forward.
    /// </summary>
    /// <remarks>
    /// The recomputation draws the same random numbers as the forward (dropout masks): the CPU generator's state is saved
    /// before the forward and restored around the recomputation, then set back to where backward found it. BatchNorm's
    /// running statistics inside a block are put back after the recomputation, so they are updated once per step as in
    /// the plain run. The recomputation runs with oneDNN on or off as the forward ran (as PyTorch's checkpoint restores the
    /// autocast state), so it takes the same kernels. The block's parameters are inputs of the autograd node, so their gradients reach them through
    /// autograd like any other (a data-parallel strategy's hooks see them). ZeRO stage 3 follows each block through
    /// <see cref="Track"/>: it gathers the block's weights before the block runs, frees them after the first forward and
    /// again after the backward. CUDA generators are not saved: on a GPU a
    /// block with dropout draws a different mask in the recomputation.
    /// </remarks>
    public static class BlockRecompute
    {
        /// <summary>
        /// Makes every block of <paramref name="model"/> recompute in backward; disposing the result puts the model back
        /// as it was. A composed block in a generated forward is swapped, through <see cref="ILayerHost.ReplaceLayer"/>, for
        /// a module holding the same sub-modules under the same names (the state dict does not change); its typed property
        /// throws while it is swapped.
        /// </summary>
        public static IDisposable Apply(nn.Module<Tensor, Tensor> model)
        {
            ArgumentNullException.ThrowIfNull(model);
            var undo = new List<Action>();
            Visit(model, undo);
            return new Undo(undo);
        }

        /// <summary>
        /// How many modules <see cref="Apply"/> changes (a test's view): each <see cref="TransformerBlock"/> and
        /// <see cref="Repeated"/> once (all their layers recompute), each composed block swapped in its slot once.
        /// </summary>
        public static int CountBlocks(nn.Module<Tensor, Tensor> model)
        {
            using var applied = (Undo)Apply(model);
            return applied.Blocks;
        }

        private static void Visit(nn.Module module, List<Action> undo)
        {
            switch (module)
            {
                case TransformerBlock transformer:
                    transformer.Recompute = true;
                    undo.Add(() => transformer.Recompute = false);
                    return;
                case Repeated repeated:
                    repeated.Recompute = true;
                    undo.Add(() => repeated.Recompute = false);
                    return;
                case ILayerHost host:
                    foreach (var name in host.LayerNames)
                    {
                        var layer = host.GetLayer(name);
                        // A composed [Block] in a generated forward: the slot runs it through the wrapper. A user's
                        // forward may read the typed property, which the swap would break: it keeps its blocks as they are.
                        if (host.ForwardIsGenerated && IsComposedBlock(layer) && layer is nn.Module<Tensor, Tensor> block)
                        {
                            var wrapper = new RecomputedBlock(block);
                            host.ReplaceLayer(name, wrapper);
                            undo.Add(() =>
                            {
                                host.ReplaceLayer(name, block);
                                GC.SuppressFinalize(wrapper); // its sub-modules are the block's, which stays
                            });
                        }
                        else if (layer is nn.Module inner) Visit(inner, undo);
                    }
                    return;
            }
        }

        /// <summary>
        /// The modules <see cref="Run"/> runs as blocks in <paramref name="module"/> after <see cref="Apply"/>: each layer of
        /// a recomputing <see cref="TransformerBlock"/>, each copy of a recomputing <see cref="Repeated"/>, and the block
        /// inside each swapped-in composed block (<paramref name="module"/> itself too when it is one). None before Apply.
        /// </summary>
        internal static List<nn.Module<Tensor, Tensor>> RecomputedBlocks(nn.Module module)
        {
            var blocks = new List<nn.Module<Tensor, Tensor>>();
            Collect(module, blocks);
            return blocks;

            static void Collect(nn.Module module, List<nn.Module<Tensor, Tensor>> blocks)
            {
                switch (module)
                {
                    case TransformerBlock { Recompute: true } transformer:
                        blocks.AddRange(transformer.Layers);
                        return;
                    case Repeated { Recompute: true } repeated:
                        blocks.AddRange(repeated.Copies);
                        return;
                    case RecomputedBlock swapped:
                        blocks.Add(swapped.Block);
                        return;
                    case ILayerHost host:
                        foreach (var name in host.LayerNames)
                            if (host.GetLayer(name) is nn.Module inner) Collect(inner, blocks);
                        return;
                }
            }
        }

        /// <summary>
        /// What holds a recomputed block's weights only while it runs (ZeRO stage 3, which gathers them from the other
        /// ranks): told before each run of the block (its first forward and its recomputation), after its first forward
        /// (nothing of the block is needed again until its recomputation in backward) and after its backward (its
        /// gradients are computed; autograd accumulates them into the parameters after this returns).
        /// </summary>
        internal interface IBlockWeights
        {
            /// <summary>Before the block runs: its weights must be whole.</summary>
            void Gather();
            /// <summary>After the block's first forward (no-grad, inside the autograd node): its weights may go.</summary>
            void AfterForward();
            /// <summary>After the block's backward returned its gradients (not yet accumulated into the parameters).</summary>
            void AfterBackward();
        }

        private static readonly ConditionalWeakTable<nn.Module, IBlockWeights> Weights = new();

        /// <summary>
        /// Tells <paramref name="weights"/> when <paramref name="block"/> (one of <see cref="RecomputedBlocks"/>) runs;
        /// returns what stops it.
        /// </summary>
        internal static Action Track(nn.Module block, IBlockWeights weights)
        {
            ArgumentNullException.ThrowIfNull(block);
            ArgumentNullException.ThrowIfNull(weights);
            Weights.AddOrUpdate(block, weights);
            return () => Weights.Remove(block);
        }

        private static IBlockWeights? WeightsOf(nn.Module block) => Weights.TryGetValue(block, out var weights) ? weights : null;

        private static bool IsComposedBlock(object layer) =>
            layer is not Repeated && layer is not TransformerBlock && layer.GetType().IsDefined(typeof(ModelAttribute), inherit: false);

        /// <summary>
        /// <paramref name="block"/>'s output for <paramref name="x"/>, keeping only <paramref name="x"/> for backward when
        /// grad is enabled and something upstream needs a gradient; otherwise a plain call.
        /// </summary>
        public static Tensor Run(nn.Module<Tensor, Tensor> block, Tensor x)
        {
            ArgumentNullException.ThrowIfNull(block);
            ArgumentNullException.ThrowIfNull(x);
            if (!torch.is_grad_enabled()) return block.call(x);
            var parameters = new List<Tensor>();
            var seen = new HashSet<IntPtr>();
            foreach (var p in block.parameters())
                if (p.requires_grad && seen.Add(p.Handle)) parameters.Add(p);
            if (!x.requires_grad && parameters.Count == 0) return block.call(x);
            var args = new object[2 + parameters.Count];
            args[0] = block;
            args[1] = x;
            for (int i = 0; i < parameters.Count; i++) args[2 + i] = parameters[i];
            // Whole before the node is built: autograd records each parameter's shape as it is at the call.
            WeightsOf(block)?.Gather();
            return Checkpoint.apply(args);
        }

        /// <summary>
        /// The autograd node of one block call. Inputs: the block (not a tensor), its input, then its trainable
        /// parameters, so that backward returns a gradient for each and autograd accumulates them as usual.
        /// </summary>
        private sealed class Checkpoint : autograd.SingleTensorFunction<Checkpoint>
        {
            public override string Name => "BlockRecompute";

            public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
            {
                var block = (nn.Module<Tensor, Tensor>)vars[0];
                var x = (Tensor)vars[1];
                using (var rng = torch.get_rng_state()) ctx.save_data("rng", rng.data<byte>().ToArray());
                ctx.save_data("onednn", Internal.OneDnn.Enabled);
                ctx.save_data("block", block);
                ctx.save_data("parameters", vars.Skip(2).Cast<Tensor>().ToArray());
                ctx.save_for_backward(new List<Tensor> { x });
                // The block's intermediate tensors are freed here, not at the end of the step: that is the saving.
                using var scope = torch.NewDisposeScope();
                var y = block.call(x);
                WeightsOf(block)?.AfterForward();
                return ReferenceEquals(y, x) ? y.alias().MoveToOuterDisposeScope() : y.MoveToOuterDisposeScope();
            }

            public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
            {
                var block = (nn.Module<Tensor, Tensor>)ctx.get_data("block");
                var rng = (byte[])ctx.get_data("rng");
                var parameters = (Tensor[])ctx.get_data("parameters");

                using var scope = torch.NewDisposeScope();
                var x = ctx.get_saved_variables()[0];
                // Stage 3 gathers the weights again here, before the probe's window: they are parameters, not activations.
                var weights = WeightsOf(block);
                weights?.Gather();
                long? heapBefore = MemoryProbe.Recording is not null ? MemoryProbe.HeapInUse() : null;
                var buffers = block.buffers().Select(b => (Buffer: b, Saved: b.clone())).ToArray();
                var resume = torch.get_rng_state();
                torch.set_rng_state(torch.tensor(rng, ScalarType.Byte));
                Tensor input, y;
                IList<Tensor> grads;
                try
                {
                    using (torch.enable_grad())
                    {
                        input = x.detach().requires_grad_(x.requires_grad);
                        // With the kernels of the first forward: the trainer's step turns oneDNN off for the backward pass
                        // of models with odd channel counts (Internal/OneDnn.cs), not for their forward.
                        y = Internal.OneDnn.With((bool)ctx.get_data("onednn"), () => block.call(input));
                    }
                    if (heapBefore is { } before && MemoryProbe.HeapInUse() is { } after) MemoryProbe.Recording?.RecomputedBlock(after - before);

                    var wrt = (x.requires_grad ? new[] { input } : Array.Empty<Tensor>()).Concat(parameters).ToList();
                    grads = torch.autograd.grad(new List<Tensor> { y }, wrt, new List<Tensor> { grad_output }, allow_unused: true);
                    weights?.AfterBackward();
                }
                finally
                {
                    // Also when the recomputation throws: the generator and (after the gradients: batch_norm's backward
                    // reads the running statistics it saved, unmodified) the buffers as the forward left them.
                    torch.set_rng_state(resume);
                    using (torch.no_grad())
                        foreach (var (buffer, saved) in buffers) buffer.copy_(saved);
                }
                var result = new List<Tensor> { null! };
                int next = 0;
                result.Add(x.requires_grad ? Keep(grads[next++]) : null!);
                for (int i = 0; i < parameters.Length; i++) result.Add(Keep(grads[next++]));
                return result;
            }

            // A parameter the block did not use has no gradient (an undefined tensor): autograd takes none.
            private static Tensor Keep(Tensor? grad) => grad is null || grad.IsInvalid ? null! : grad.MoveToOuterDisposeScope();
        }

        private sealed class Undo : IDisposable
        {
            private readonly List<Action> _undo;
            public Undo(List<Action> undo) => _undo = undo;
            public int Blocks => _undo.Count;

            public void Dispose()
            {
                for (int i = _undo.Count - 1; i >= 0; i--) _undo[i]();
                _undo.Clear();
            }
        }
    }

    /// <summary>
    /// A composed block in its host's slot while it recomputes: its sub-modules, parameters and buffers registered under
    /// the block's own names (the host's state dict is unchanged), its forward the block's through <see cref="BlockRecompute.Run"/>.
    /// </summary>
    internal sealed class RecomputedBlock : nn.Module<Tensor, Tensor>
    {
        private readonly nn.Module<Tensor, Tensor> _block;

        /// <summary>The composed block it runs.</summary>
        public nn.Module<Tensor, Tensor> Block => _block;

        public RecomputedBlock(nn.Module<Tensor, Tensor> block) : base(block.GetName())
        {
            _block = block;
            foreach (var (name, child) in block.named_children()) register_module(name, child);
            foreach (var (name, parameter) in block.named_parameters(recurse: false)) register_parameter(name, parameter);
            foreach (var (name, buffer) in block.named_buffers(recurse: false)) register_buffer(name, buffer);
        }

        public override Tensor forward(Tensor input) => BlockRecompute.Run(_block, input);
    }
}
