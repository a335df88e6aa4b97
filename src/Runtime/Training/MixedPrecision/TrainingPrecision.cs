using System;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Training.MixedPrecision
{
    /// <summary>
    /// The arithmetic of a training step's forward and backward: the step's one seam for mixed precision. The step runs
    /// <see cref="Forward"/> instead of the model, backward on the loss, then <see cref="CollectGradients"/>; afterwards
    /// the model's own (float32) parameters hold the gradients, so synchronisation, clipping and the optimiser step
    /// never ask which precision ran.
    /// </summary>
    public interface ITrainingPrecision : IDisposable
    {
        /// <summary>What runs: <c>fp32</c> or <c>bf16</c> (the report's <c>precision</c>).</summary>
        string Name { get; }

        /// <summary>
        /// The model's output for <paramref name="x"/>, in float32 (the loss runs in float32).
        /// <paramref name="weightsChanged"/>: the optimiser stepped since the last call (the first micro-batch of a
        /// step), so working copies of the weights must be refreshed.
        /// </summary>
        Tensor Forward(Tensor x, bool weightsChanged);

        /// <summary>The module <see cref="Forward"/> runs: the model, or its working copy (where blocks recompute, <see cref="BlockRecompute"/>).</summary>
        nn.Module<Tensor, Tensor> Module { get; }

        /// <summary>After each backward: adds the gradients it produced to the model's float32 parameters' <c>.grad</c>.</summary>
        void CollectGradients();

        /// <summary>
        /// After the optimiser's step: mixed precision frees the float32 gradients it gave the model for the step (between
        /// steps only the working copy's bfloat16 gradients stay, ZeRO's layout). Float32 keeps them (the default).
        /// </summary>
        void AfterOptimizerStep() { }
    }

    /// <summary>Plain float32: the model itself runs and holds its gradients.</summary>
    public sealed class Float32Training : ITrainingPrecision
    {
        private readonly nn.Module<Tensor, Tensor> _model;

        /// <summary>Runs <paramref name="model"/> as it is.</summary>
        public Float32Training(nn.Module<Tensor, Tensor> model) => _model = model;

        /// <inheritdoc/>
        public string Name => "fp32";
        /// <inheritdoc/>
        public nn.Module<Tensor, Tensor> Module => _model;
        /// <inheritdoc/>
        public Tensor Forward(Tensor x, bool weightsChanged) => _model.call(x);
        /// <inheritdoc/>
        public void CollectGradients() { }
        /// <inheritdoc/>
        public void Dispose() { }
    }

    /// <summary>Chooses the step arithmetic for a run: the plan's, unless the hardware cannot run it fast.</summary>
    public static class TrainingPrecision
    {
        /// <summary>
        /// The arithmetic for <paramref name="requested"/> on <paramref name="device"/>. bfloat16 on a CPU without
        /// AVX-512 BF16 or AMX falls back to float32 and says why through <paramref name="warn"/> (one line): there
        /// oneDNN emulates bfloat16 products through float32, slower than float32 itself. <paramref name="create"/>
        /// builds the working copy (a model of the same class); the random stream is left as it was.
        /// </summary>
        public static ITrainingPrecision Create<TModel>(Precision requested, TModel model, Func<TModel> create, Device device, CpuFeatures cpu, Action<string> warn)
            where TModel : nn.Module<Tensor, Tensor>
        {
            if (requested != Precision.BFloat16) return new Float32Training(model);
            if (device.type == DeviceType.CPU && !cpu.HasBFloat16MatrixProducts)
            {
                warn("warning: --precision bf16: this CPU has neither AVX-512 BF16 nor AMX, where bfloat16 matrix products are slower than float32; training in fp32");
                return new Float32Training(model);
            }
            // Building a model draws initial weights: the working copy must not move the stream that dropout and the
            // rest of the run draw from (its weights are overwritten by the master's anyway).
            using var rng = torch.get_rng_state();
            var working = create();
            torch.set_rng_state(rng);
            working.to(device);
            return new BFloat16Training(model, working);
        }
    }
}
