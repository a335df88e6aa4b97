using ModelDsl.Runtime.Training.MixedPrecision;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Training
{
    /// <summary>What one step did: the batch loss, how many predictions were right, and whether weights changed.</summary>
    public readonly record struct StepResult(double Loss, long Correct, bool Applied);

    /// <summary>
    /// One optimisation step exactly as generated trainers run it: forward, loss, a finiteness check decided by the
    /// strategy (under DDP a NaN or infinite loss anywhere leaves the weights untouched everywhere), <c>zero_grad</c>, backward,
    /// gradient synchronisation (the strategy's: DDP averages here), optional gradient-norm clipping, optimiser step,
    /// and the count of correct predictions for the progress display. Forward and backward run in the step's
    /// <see cref="ITrainingPrecision"/> (float32, or bfloat16 on a working copy whose gradients reach the model's own).
    /// </summary>
    public sealed class TrainingStep
    {
        private readonly nn.Module<Tensor, Tensor> _model;
        private readonly OptimizerHelper _optimizer;
        private readonly Loss _loss;
        private readonly System.Func<Tensor, Tensor, Tensor> _compute;
        private readonly double _clip;
        private readonly ITrainingStrategy _strategy;
        private readonly ITrainingPrecision _precision;

        /// <summary>
        /// Binds the step to a model, its optimiser, the loss, the clipping threshold (0 = off), the strategy and the
        /// arithmetic (default float32).
        /// </summary>
        public TrainingStep(nn.Module<Tensor, Tensor> model, OptimizerHelper optimizer, Loss loss, double gradientClipNorm, ITrainingStrategy? strategy = null,
            ITrainingPrecision? precision = null)
        {
            _model = model;
            _optimizer = optimizer;
            _loss = loss;
            _compute = (output, y) => LossFunctions.Compute(loss, output, y);
            _clip = gradientClipNorm;
            _strategy = strategy ?? new SingleProcessStrategy();
            _precision = precision ?? new Float32Training(model);
            _atenBackward = Internal.OneDnn.NeedsAtenConvolutionBackward(model);
        }

        /// <summary>Binds the step to a model, its optimiser and the plan's loss (its [Loss] method, if any) and clipping threshold.</summary>
        public TrainingStep(nn.Module<Tensor, Tensor> model, OptimizerHelper optimizer, TrainingPlan plan, ITrainingStrategy? strategy = null,
            ITrainingPrecision? precision = null)
            : this(model, optimizer, plan.Loss, plan.GradientClipNorm, strategy, precision)
        {
            _compute = (output, y) => LossFunctions.Compute(plan, output, y);
        }

        /// <summary>Runs one step on a batch. Tensors it creates belong to the caller's dispose scope.</summary>
        public StepResult Run(Tensor x, Tensor y) => Run(x, y, weight: 1, first: true, last: true);

        /// <summary>
        /// Runs one micro-batch of a gradient-accumulation group (<see cref="TrainingPlan.GradientAccumulation"/>):
        /// the first zeroes the gradients, each adds the gradient of its loss times <paramref name="weight"/> (its
        /// share of the group's samples, so the group's gradient is that of the mean loss over all its samples), and
        /// the last alone agrees on finiteness, synchronises (no collective on the others, like DDP's
        /// <c>no_sync()</c>), clips and steps. A micro-batch with a non-finite loss adds nothing and makes the group's
        /// step skipped. <see cref="StepResult.Applied"/> is true only when the optimiser stepped; the loss is the
        /// micro-batch's (at the last, the group's first non-finite one, if any). With one micro-batch per group this
        /// is the plain step.
        /// </summary>
        public StepResult Run(Tensor x, Tensor y, double weight, bool first, bool last)
        {
            Probe?.BeforeForward();
            var output = _precision.Forward(x, weightsChanged: first);
            var loss = _compute(output, y);
            Probe?.AfterLoss();
            double value = loss.item<float>();
            if (first) (_groupFinite, _groupLoss) = (true, 0);
            if (_groupFinite && !double.IsFinite(value)) (_groupFinite, _groupLoss) = (false, value);
            // The vote on finiteness: before backward, or with the gradients after it (DDP: one collective per step).
            bool votesLater = _strategy.VotesWithGradients;
            if (last && !votesLater && !_strategy.AllFinite(_groupFinite)) return Skipped(value);

            if (first) _optimizer.zero_grad();
            if (_groupFinite)
            {
                // oneDNN's convolution backward is wrong for channel counts that are not multiples of 16 (Internal/OneDnn.cs).
                Internal.OneDnn.Backward(weight == 1 ? loss : loss * weight, _atenBackward);
                Probe?.AfterBackward();
                _precision.CollectGradients();
            }
            long correct = LossFunctions.CountCorrect(_loss, output, y);
            if (!last) return new StepResult(value, correct, Applied: false);
            if (!votesLater) _strategy.SynchronizeGradients(_model);
            else if (!_strategy.SynchronizeGradients(_model, _groupFinite)) return Skipped(value);
            if (_clip > 0 && !_strategy.ClipsGradients) nn.utils.clip_grad_norm_(_model.parameters(), _clip);
            _optimizer.step();
            _precision.AfterOptimizerStep();
            return new StepResult(value, correct, Applied: true);
        }

        private StepResult Skipped(double value) => new(_groupFinite ? value : _groupLoss, 0, Applied: false);

        /// <summary>Measures the activations of the steps it is armed for (the report's <c>memory</c> section), if set.</summary>
        public MemoryProbe? Probe { get; set; }

        private readonly bool _atenBackward;
        private bool _groupFinite = true;
        private double _groupLoss;
    }
}
