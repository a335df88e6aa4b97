#if MODELDSL_GENERATOR
// Compiled into the generator too (its parsers read the properties by nameof), under its own namespace: the generator
// tests reference both assemblies.
namespace ModelDsl.Generators.Dsl
#else
namespace ModelDsl
#endif
{
    /// <summary>Loss functions, named as in <c>torch.nn</c>.</summary>
    public enum Loss
    {
        /// <summary><c>nn.CrossEntropyLoss</c>: logits <c>(B, C)</c> and class indices <c>(B)</c>.</summary>
        CrossEntropy = 0,
        /// <summary><c>nn.NLLLoss</c>: log-probabilities <c>(B, C)</c> (e.g. after <c>[LogSoftmax(1)]</c>) and class indices.</summary>
        NLL = 1,
        /// <summary><c>nn.MSELoss</c>: regression; output and targets of the same shape.</summary>
        MSE = 2,
        /// <summary><c>nn.BCEWithLogitsLoss</c>: one logit per sample, <c>(B)</c> or <c>(B, 1)</c>, and 0/1 targets.</summary>
        BCEWithLogits = 3,
    }

    /// <summary>Optimisers, named as in <c>torch.optim</c>.</summary>
    public enum Optimizer
    {
        /// <summary><c>optim.SGD</c>, with optional momentum and Nesterov.</summary>
        SGD = 0,
        /// <summary><c>optim.Adam</c>.</summary>
        Adam = 1,
        /// <summary><c>optim.AdamW</c> (decoupled weight decay).</summary>
        AdamW = 2,
    }

    /// <summary>Learning-rate schedules, applied per epoch (or per step, with <see cref="ScheduleInterval.Step"/>).</summary>
    public enum Schedule
    {
        /// <summary>The learning rate stays as declared.</summary>
        Constant = 0,
        /// <summary><c>StepLR</c>: multiply by <see cref="TrainAttribute.Gamma"/> every <see cref="TrainAttribute.StepSize"/> epochs.</summary>
        Step = 1,
        /// <summary>Linear warm-up for <see cref="TrainAttribute.WarmupEpochs"/>, then cosine annealing to zero.</summary>
        Cosine = 2,
    }

    /// <summary>When the learning-rate schedule advances (Lightning's <c>interval</c>).</summary>
    public enum ScheduleInterval
    {
        /// <summary>Once per epoch: the whole epoch runs at one learning rate.</summary>
        Epoch = 0,
        /// <summary>
        /// After every optimiser step, along the same curve at fractional epochs (a warm-up of one epoch rises
        /// linearly over that epoch's steps), as Transformer recipes schedule per iteration.
        /// </summary>
        Step = 1,
    }

    /// <summary>
    /// The arithmetic of training's forward and backward passes (<c>--precision fp32|bf16</c>). The weights the optimiser
    /// steps, its state, checkpoints and evaluation stay float32 either way.
    /// </summary>
    public enum Precision
    {
        /// <summary>Everything in float32.</summary>
        Float32 = 0,
        /// <summary>
        /// Mixed precision as PyTorch's CPU autocast: matrix products (<c>Linear</c>, attention) run in bfloat16 on
        /// bfloat16 working copies of their weights; norms, softmax, convolutions and the loss in float32; the gradients
        /// reach float32 master weights, which the optimiser steps. On a CPU without bfloat16 instructions (AVX-512
        /// BF16 or AMX) the run falls back to float32 with a warning.
        /// </summary>
        BFloat16 = 1,
    }

    /// <summary>
    /// Activation recomputation (gradient checkpointing, Chen et al. 2016; PyTorch's <c>torch.utils.checkpoint</c>):
    /// which layers keep only their input in the forward pass and run their forward again in backward
    /// (<c>--recompute none|blocks</c>). Gradients are those of the plain run; the price is one more forward per block.
    /// </summary>
    public enum Recompute
    {
        /// <summary>Every layer keeps what its backward needs (the default).</summary>
        None = 0,
        /// <summary>
        /// Each block keeps only its input: every layer of a <c>[TransformerBlock]</c> (each of its <c>Repeat</c> copies)
        /// and every composed <c>[Block]</c> (each copy of a repeated one). Dropout inside a block draws the same mask in
        /// the recomputation; BatchNorm's running statistics are updated once.
        /// </summary>
        Blocks = 1,
    }

    /// <summary>
    /// Declares how a <see cref="ModelAttribute">[Model]</see> class is trained. The generator adds a static
    /// <c>Run(string[] args)</c> that parses the command line, loads the data, trains with progress, writes
    /// checkpoints each epoch, and reports. Values are checked at compile time. The generated plan holds only the
    /// properties a model writes; the runtime applies the default each property names to the others.
    /// </summary>
    /// <example><c>[Train(Loss.CrossEntropy, Optimizer.Adam, LearningRate = 1e-3, Epochs = 30, BatchSize = 64)]</c></example>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
    public sealed class TrainAttribute : Attribute
    {
        /// <summary>Declares the loss and the optimiser; everything else has PyTorch-like defaults.</summary>
        public TrainAttribute(Loss loss, Optimizer optimizer) { Loss = loss; Optimizer = optimizer; }

        /// <summary>The loss function.</summary>
        public Loss Loss { get; }
        /// <summary>The optimiser.</summary>
        public Optimizer Optimizer { get; }
        /// <summary>Learning rate; must be positive. Default 1e-3.</summary>
        public double LearningRate { get; set; } = PlanDefaults.LearningRate;
        /// <summary>L2 penalty (decoupled for AdamW). Default 0 (AdamW: 0.01, as in PyTorch).</summary>
        public double WeightDecay { get; set; } = PlanDefaults.WeightDecay;
        /// <summary>SGD momentum in [0, 1). Default 0.</summary>
        public double Momentum { get; set; }
        /// <summary>Nesterov momentum for SGD; needs a positive momentum. Default false.</summary>
        public bool Nesterov { get; set; }
        /// <summary>Number of passes over the training data; at least 1. Default 10.</summary>
        public int Epochs { get; set; } = PlanDefaults.Epochs;
        /// <summary>Samples per batch per rank, as in PyTorch's DataLoader; at least 1. Default 64.</summary>
        public int BatchSize { get; set; } = PlanDefaults.BatchSize;
        /// <summary>Seed for initialisation, shuffling (seed + epoch) and dropout. Default 0.</summary>
        public long Seed { get; set; }
        /// <summary>The learning-rate schedule. Default constant.</summary>
        public Schedule Schedule { get; set; } = Schedule.Constant;
        /// <summary>
        /// Epochs of linear warm-up before the cosine schedule; a fraction of an epoch (e.g. <c>0.1</c>) needs
        /// <see cref="ScheduleInterval"/><c>.Step</c>. Default 0.
        /// </summary>
        public double WarmupEpochs { get; set; }
        /// <summary>Epochs between decays of the step schedule. Default 10.</summary>
        public int StepSize { get; set; } = PlanDefaults.StepSize;
        /// <summary>Decay factor of the step schedule, in (0, 1]. Default 0.1.</summary>
        public double Gamma { get; set; } = PlanDefaults.Gamma;
        /// <summary>Clip the global gradient L2 norm to this value; 0 turns clipping off. Default 0.</summary>
        public double GradientClipNorm { get; set; }
        /// <summary>
        /// The training data: a CSV file (features then the label in the last column, a header row allowed), or for a language
        /// model a UTF-8 text file (its characters are the vocabulary); a relative path is looked up in the working
        /// directory, then beside the program. <c>--data</c> overrides it.
        /// </summary>
        public string Data { get; set; } = "";
        /// <summary>Optional held-out test data in the same format; reported as <c>test_accuracy</c>.</summary>
        public string TestData { get; set; } = "";
        /// <summary>
        /// Every feature value is multiplied by this when the data is loaded (e.g. <c>1.0 / 16</c> for optdigits'
        /// pixel counts 0..16); must be positive. Default 1.
        /// </summary>
        public double FeatureScale { get; set; } = PlanDefaults.FeatureScale;
        /// <summary>Fraction of the training data held out for validation, in [0, 1). Default 0.1.</summary>
        public double ValidationFraction { get; set; } = PlanDefaults.ValidationFraction;
        /// <summary>
        /// Stop when the validation loss has not improved for this many epochs (Keras' and Lightning's
        /// <c>EarlyStopping(patience)</c> on <c>val_loss</c>); 0 turns early stopping off. Needs a validation set.
        /// <c>best.ckpt</c>, the checkpoint of the best epoch, is written either way. Default 0.
        /// </summary>
        public int EarlyStoppingPatience { get; set; }
        /// <summary>When the schedule advances: every epoch (default) or every optimiser step.</summary>
        public ScheduleInterval ScheduleInterval { get; set; } = ScheduleInterval.Epoch;
        /// <summary>
        /// For a language model (token ids <c>(B, T)</c> in, next-token scores <c>(B, T, V)</c> out, trained on a text
        /// file): the window length T of the training samples, binding a symbolic T of the input. Not needed when
        /// the input's T is a number; at most a <c>[PositionalEmbedding]</c>'s maxLength. Default 0: from the input.
        /// </summary>
        public int SequenceLength { get; set; }
        /// <summary>
        /// Whether the CSV files' first row is a header row naming the columns (<c>--header</c> declares it for one
        /// run). Not set: a header row is detected (a first row without a single number, followed by a row of
        /// numbers). <c>false</c>: the first row is data.
        /// </summary>
        public bool Header { get; set; }
        /// <summary>
        /// The label column's name in the header row, e.g. <c>"label"</c>; the other columns are the features, in file
        /// order. Implies a header row. Default: the last column is the label (<c>--label-column</c> overrides it).
        /// </summary>
        public string LabelColumn { get; set; } = "";
        /// <summary>
        /// The memory one rank may use, in MiB: the compiler's per-rank memory plan (parameters, gradients, optimiser
        /// state and activations at <see cref="BatchSize"/>, at the [Parallel] world size and shard level) above it is the
        /// error MD0430, which names the largest term and the shard level that would fit. Default 0: no budget.
        /// </summary>
        public double MemoryBudgetMB { get; set; }
        /// <summary>
        /// Gradient accumulation: k micro-batches of <see cref="BatchSize"/> per optimiser step, their gradients summed
        /// (each micro-batch's loss weighted by its share of the group's samples), so a step equals one at k × the batch;
        /// under data parallel the gradients are averaged across ranks on the last micro-batch only. At least 1;
        /// <c>--grad-accum</c> overrides it. Default 1.
        /// </summary>
        public int GradientAccumulation { get; set; } = PlanDefaults.GradientAccumulation;
        /// <summary>
        /// The arithmetic of the training steps: <see cref="Precision.Float32"/> (default) or
        /// <see cref="Precision.BFloat16"/> (mixed precision: float32 master weights, bfloat16 matrix products);
        /// <c>--precision fp32|bf16</c> overrides it.
        /// </summary>
        public Precision Precision { get; set; }
        /// <summary>
        /// Activation recomputation: <see cref="Recompute.None"/> (default) or <see cref="Recompute.Blocks"/> (each block
        /// keeps only its input and runs its forward again in backward); <c>--recompute none|blocks</c> overrides it. A
        /// model without a block is MD0420.
        /// </summary>
        public Recompute Recompute { get; set; }
    }
}
