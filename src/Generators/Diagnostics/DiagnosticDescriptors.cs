namespace ModelDsl.Generators.Diagnostics
{
    /// <summary>
    /// The one catalog of ModelDsl diagnostics. Ranges: MD00xx declarations, MD01xx shapes, MD04xx training. Every id
    /// has a section in docs/diagnostics.md, which the help link points to.
    /// </summary>
    internal static class DiagnosticDescriptors
    {
        /// <summary>
        /// The published docs folder, from the MSBuild property <c>ModelDslDocsUrl</c> (Directory.Build.props), which
        /// the build stores in this assembly's metadata. Help links must be absolute: an IDE or a build log shows them
        /// far from this repository.
        /// </summary>
        internal static readonly string DocsUrl = (typeof(DiagnosticDescriptors).Assembly
            .GetCustomAttributes(typeof(System.Reflection.AssemblyMetadataAttribute), false)
            .OfType<System.Reflection.AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "ModelDslDocsUrl")?.Value ?? "").TrimEnd('/');

        // Before the descriptors: static fields initialise in textual order.
        private static readonly string HelpBase = DocsUrl + "/diagnostics.md#";
        private const string Declarations = "ModelDsl.Declarations";
        private const string ShapeCategory = "ModelDsl.Shapes";
        private const string TrainingCategory = "ModelDsl.Training";
        private const string ParallelCategory = "ModelDsl.Parallel";
        private const string OptimizationCategory = "ModelDsl.Optimization";

        public static readonly DiagnosticDescriptor TorchSharpMissing = Error("MD0001", Declarations,
            "TorchSharp is not referenced",
            "Model '{0}' needs TorchSharp: reference the ModelDsl package (inside the ModelDsl repository, the ModelDsl.Runtime project), or TorchSharp itself");

        public static readonly DiagnosticDescriptor ClassNotPartial = Error("MD0002", Declarations,
            "A model class must be partial",
            "Model class '{0}' must be declared 'partial' so the generator can add its constructor and forward");

        public static readonly DiagnosticDescriptor UnsupportedClass = Error("MD0003", Declarations,
            "Unsupported model class",
            "Model class '{0}' cannot be generated: {1}");

        public static readonly DiagnosticDescriptor ContainingTypeNotPartial = Error("MD0004", Declarations,
            "A containing type must be partial",
            "Model class '{0}' is nested in '{1}', which must be declared 'partial' too");

        public static readonly DiagnosticDescriptor InvalidLayerMember = Error("MD0005", Declarations,
            "Invalid layer member",
            "Layer '{0}' must be {1}");

        public static readonly DiagnosticDescriptor LayerTypeMismatch = Error("MD0006", Declarations,
            "Layer member has the wrong type",
            "[{0}] builds a '{1}', but '{2}' is declared as '{3}'");

        public static readonly DiagnosticDescriptor MultipleLayerAttributes = Error("MD0007", Declarations,
            "More than one layer attribute on a member",
            "'{0}' has more than one layer attribute; each member is exactly one layer");

        public static readonly DiagnosticDescriptor NoLayers = Warning("MD0008", Declarations,
            "Model has no layers",
            "Model '{0}' declares no layers; its forward returns its input unchanged");

        public static readonly DiagnosticDescriptor NotALayer = Error("MD0009", Declarations,
            "Member is not a layer",
            "'{0}' of model '{1}' is not a layer: {2}");

        public static readonly DiagnosticDescriptor ModelContainsItself = Error("MD0010", Declarations,
            "A model contains itself",
            "'{0}' makes model '{1}' contain itself ({2}); a model cannot be its own layer");

        public static readonly DiagnosticDescriptor LayersAcrossFiles = Warning("MD0011", Declarations,
            "Layers are declared in several files",
            "Model '{0}' declares layers in more than one file; they run in the order the compiler lists the files ({1}). Keep the layers in one declaration to make the order explicit.");

        public static readonly DiagnosticDescriptor ConflictingBaseClass = Error("MD0012", Declarations,
            "A model class cannot have another base class",
            "Model class '{0}' derives from '{1}'; generated models derive from TorchSharp's Module<Tensor, Tensor>");

        // A warning, not an info: an info is hidden at the default build verbosity, and a user who did not mean to
        // lose the shape checks must see it. One who did silences it by id.
        public static readonly DiagnosticDescriptor UserForwardUnchecked = Warning("MD0013", Declarations,
            "Shapes are not checked through a hand-written forward",
            "Model '{0}' defines its own forward, so the compiler does not check the shapes between its layers (libtorch checks them when forward runs); if that is intended, silence this warning with #pragma warning disable MD0013 or <NoWarn>MD0013</NoWarn>");

        public static readonly DiagnosticDescriptor InvalidInputType = Error("MD0014", Declarations,
            "Invalid input type",
            "InputType (DType){0} of model '{1}' is not a DType; use DType.Float32, Float64, Float16, Int32 or Int64");

        public static readonly DiagnosticDescriptor OneInputTensor = Error("MD0015", Declarations,
            "A model takes one input tensor",
            "Model '{0}' declares forward with {1} inputs, but a [Model] is a Module<Tensor, Tensor> and takes one input tensor, shaped by [Model(Input = ...)]. " +
            "Declare the inputs instead, [Model(Inputs = new[] { \"x: B, ...\", \"y: B, ...\" })], and read each with From or a merge: the generated forward takes them in that order.");

        // A hand-written forward that reads a layer a declared pass replaces: the typed property holds only its declared
        // type, so after [Quantize] it throws. The slot (GetLayer) runs whatever the pass put there.
        public static readonly DiagnosticDescriptor ReplacedLayerReadThroughProperty = Error("MD0016", Declarations,
            "A hand-written forward reads a layer that [Quantize] replaces",
            "forward reads '{0}' through its typed property, but {1} replaces this {2} with an int8 layer after training, and the property then throws; run the layer through its slot: {3}");

        public static readonly DiagnosticDescriptor ComposedReadThroughProperty = Error("MD0018", Declarations,
            "A composed model's hand-written forward reads a layer that [Quantize] replaces",
            "{0} replaces the Linear, LSTM and GRU layers of composed models too, but the hand-written forward of '{2}' reads '{1}' through its typed property, which then throws; in that forward run the layer through its slot: GetLayer(nameof({3})).call(...)");

        // .forward skips the module's hooks; pruning recomputes weight = weight_mask * weight_orig in a forward pre-hook.
        public static readonly DiagnosticDescriptor LayerCalledThroughForward = Warning("MD0017", Declarations,
            "A layer is called through .forward",
            "'{0}.forward(...)' skips the layer's hooks (pruning recomputes the masked weight in one, so fine-tuning a pruned layer fails); call it with '{0}.call(...)'");

        // Graph models (docs/graphs.md): sources, merges, the output layer, repeated blocks.
        public static readonly DiagnosticDescriptor MergeShapeMismatch = Error("MD0019", ShapeCategory,
            "Merged shapes do not broadcast",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor ConcatMismatch = Error("MD0020", ShapeCategory,
            "Concat dim out of range or other dims unequal",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor TooFewSources = Error("MD0021", Declarations,
            "A merge needs two or more sources",
            "'{0}': [{1}] merges two or more layers, but names {2}");

        public static readonly DiagnosticDescriptor UnknownSource = Error("MD0022", Declarations,
            "A source must name an earlier layer",
            "'{0}' reads '{1}', which {2}");

        public static readonly DiagnosticDescriptor UnknownOutputLayer = Error("MD0023", Declarations,
            "Output names no layer",
            "Output = \"{0}\" names no layer of model '{1}'; its layers are {2}");

        public static readonly DiagnosticDescriptor UnusedLayer = Warning("MD0024", Declarations,
            "A layer's output is never used",
            "Nothing reads the output of '{0}' and it is not the model's output ('{1}'): it is computed for nothing; read it with From or a merge, or remove it");

        public static readonly DiagnosticDescriptor RepeatedBlockReadThroughProperty = Error("MD0035", Declarations,
            "A repeated block is read through its typed property",
            "'{0}' holds {1} copies, but its typed property is the first copy only, so the others would never run or train; run them all with 'GetLayer(nameof({0})).call(x)'");

        public static readonly DiagnosticDescriptor RepeatBelowOne = Error("MD0025", Declarations,
            "Repeat must be at least 1",
            "'{0}': Repeat = {1}; a block runs at least once");

        public static readonly DiagnosticDescriptor RepeatedBlockShape = Error("MD0026", ShapeCategory,
            "A repeated block must keep its input shape",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor StructuredGroupReachesComposedModel = Error("MD0027", OptimizationCategory,
            "A structured cut's channel group reaches a composed model",
            "Structured pruning of '{0}': its channel group {1} reaches the composed model '{2}', whose input channels a cut does not change; name a layer inside it (\"{2}.Conv1\", a repeated block's copies \"{2}.0.Conv1\" or \"{2}.*.Conv1\")");

        public static readonly DiagnosticDescriptor StructuredGroupReachesInput = Error("MD0028", OptimizationCategory,
            "A structured cut's channel group reaches the model input",
            "Structured pruning of '{0}': its channel group {1} is joined to the model input, whose channels are fixed");

        public static readonly DiagnosticDescriptor StructuredGroupReachesOutput = Error("MD0029", OptimizationCategory,
            "A structured cut's channel group reaches the model output",
            "Structured pruning of '{0}': its channel group {1} reaches '{2}', the model's output, whose shape is fixed");

        public static readonly DiagnosticDescriptor StructuredGroupBreaksMerge = Error("MD0030", OptimizationCategory,
            "A structured cut would break a merge",
            "Structured pruning of '{0}' would break the merge '{1}': {2} (the channel group: {3})");

        public static readonly DiagnosticDescriptor InvalidModelInputs = Error("MD0031", Declarations,
            "Invalid model inputs",
            "Model '{0}': {1}");

        public static readonly DiagnosticDescriptor UnreadInput = Warning("MD0032", Declarations,
            "An input nobody reads",
            "No layer of '{0}' reads the input '{1}': the forward takes it and ignores it; read it with From = \"{1}\" or a merge, or remove it from Inputs");

        public static readonly DiagnosticDescriptor OneInputOnly = Error("MD0033", Declarations,
            "This feature takes a model with one input",
            "{0} takes a model with one input, but '{1}' declares {2} (Inputs); {3}");

        public static readonly DiagnosticDescriptor StructuredGroupReachesBlockBoundary = Error("MD0036", OptimizationCategory,
            "A structured cut inside a block reaches the block's input or output",
            "Structured pruning of '{0}': its channel group {1} reaches the {2} of the block '{3}', whose channels the layers around the block make or read; a cut inside a block stays inside it");

        public static readonly DiagnosticDescriptor MalformedInput = Error("MD0100", ShapeCategory,
            "Malformed input shape",
            "Input shape \"{0}\" of model '{1}' is malformed: {2}");

        public static readonly DiagnosticDescriptor SizeMismatch = Error("MD0101", ShapeCategory,
            "Explicit size disagrees with the inferred one",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor RankMismatch = Error("MD0102", ShapeCategory,
            "Input has the wrong number of dimensions",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor OutputTooSmall = Error("MD0103", ShapeCategory,
            "Window larger than its input",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor NonPositive = Error("MD0104", ShapeCategory,
            "Size must be positive",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor ProbabilityOutOfRange = Error("MD0105", ShapeCategory,
            "Dropout probability out of range",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor IntegerInputRequired = Error("MD0106", ShapeCategory,
            "Embedding needs integer input",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor FloatInputRequired = Error("MD0107", ShapeCategory,
            "Layer needs floating-point input",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor DimOutOfRange = Error("MD0108", ShapeCategory,
            "Dimension out of range",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor NotInferable = Error("MD0109", ShapeCategory,
            "Size cannot be inferred",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor InvalidArgument = Error("MD0110", ShapeCategory,
            "Invalid layer argument",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor TooLarge = Error("MD0111", ShapeCategory,
            "Sizes too large",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor SubmodelInputMismatch = Error("MD0112", ShapeCategory,
            "Composed model does not accept this input",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor NotInferableWithUserForward = Error("MD0113", ShapeCategory,
            "Size must be explicit where the input shape is unknown",
            "'{0}': the {1} cannot be inferred because {2}; write it explicitly, e.g. [{3}]");

        // Transformer layers: sequences of vectors (B, T, C), attention heads, positions, weight tying.
        public static readonly DiagnosticDescriptor HeadsDoNotDivide = Error("MD0114", ShapeCategory,
            "Attention heads do not divide the embedding size",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor SequenceTooLong = Error("MD0115", ShapeCategory,
            "Sequence longer than the positional table",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor TiedWeightMismatch = Error("MD0116", ShapeCategory,
            "Tied weight does not fit",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor NotASequence = Error("MD0117", ShapeCategory,
            "Sequence layer needs a (B, T, C) input",
            "'{0}': {1}");

        public static readonly DiagnosticDescriptor RuntimeMissing = Error("MD0400", TrainingCategory,
            "ModelDsl.Runtime is not referenced",
            "[Train] on '{0}' needs the ModelDsl runtime: reference the ModelDsl package (inside the ModelDsl repository, the ModelDsl.Runtime project)");

        public static readonly DiagnosticDescriptor InvalidLearningRate = Error("MD0401", TrainingCategory,
            "Invalid learning rate",
            "LearningRate is {0}; it must be a positive number");

        public static readonly DiagnosticDescriptor InvalidEpochs = Error("MD0402", TrainingCategory,
            "Invalid epoch count",
            "Epochs is {0}; train for at least 1 epoch");

        public static readonly DiagnosticDescriptor InvalidBatchSize = Error("MD0403", TrainingCategory,
            "Invalid batch size",
            "BatchSize is {0}; it must be at least 1");

        public static readonly DiagnosticDescriptor LossDoesNotFitOutput = Error("MD0404", TrainingCategory,
            "Loss does not fit the model's output",
            "Loss.{0} does not fit the output {1} of model '{2}': {3}");

        public static readonly DiagnosticDescriptor InvalidOptimizerSetting = Error("MD0405", TrainingCategory,
            "Invalid optimiser setting",
            "{0}");

        public static readonly DiagnosticDescriptor InvalidSchedule = Error("MD0406", TrainingCategory,
            "Invalid learning-rate schedule",
            "{0}");

        public static readonly DiagnosticDescriptor LossActivationMismatch = Warning("MD0407", TrainingCategory,
            "The model's last layer does not suit the loss",
            "Loss.{0} after a final [{1}] layer: {2}");

        public static readonly DiagnosticDescriptor InvalidTrainingSetting = Error("MD0408", TrainingCategory,
            "Invalid training setting",
            "{0}");

        public static readonly DiagnosticDescriptor TrainNeedsConcreteInput = Error("MD0409", TrainingCategory,
            "Training needs concrete per-sample dimensions",
            "[Train] reads samples of model '{0}' from files, so its input {1} must be concrete after the batch dimension{2}");

        public static readonly DiagnosticDescriptor TrainWithoutModel = Error("MD0410", TrainingCategory,
            "[Train] needs [Model]",
            "[Train] on '{0}' has nothing to train: add [Model(Input = \"...\")] and layers to the class");

        public static readonly DiagnosticDescriptor InvalidLabelColumn = Error("MD0411", TrainingCategory,
            "Invalid label column",
            "{0}");

        public static readonly DiagnosticDescriptor LabelColumnNeedsHeader = Error("MD0412", TrainingCategory,
            "A named label column needs a header row",
            "LabelColumn = \"{0}\" names a column of the header row, but Header = false declares that the first row is data; drop Header = false");

        public static readonly DiagnosticDescriptor CsvSettingOnTextData = Error("MD0413", TrainingCategory,
            "CSV setting on a language model",
            "{0} applies to CSV data, but '{1}' is a language model trained on a text file");
        // MD0414–MD0416: the custom loss ([Loss] method).
        public static readonly DiagnosticDescriptor InvalidLossMethod = Error("MD0414", TrainingCategory,
            "Invalid [Loss] method",
            "The [Loss] method '{0}' must be 'static Tensor {0}(Tensor output, Tensor target)': {1}");

        public static readonly DiagnosticDescriptor SecondLossMethod = Error("MD0415", TrainingCategory,
            "More than one [Loss] method",
            "'{0}' already trains with the [Loss] method '{1}': a model has one loss; remove [Loss] from one of them");

        public static readonly DiagnosticDescriptor LossWithoutTrain = Error("MD0416", TrainingCategory,
            "[Loss] needs [Train]",
            "[Loss] method '{0}' is on '{1}', which has no [Train]: only the generated trainer uses it; add [Train(...)] to the class");

        public static readonly DiagnosticDescriptor InvalidGradientAccumulation = Error("MD0418", TrainingCategory,
            "Invalid gradient accumulation",
            "GradientAccumulation is {0}; it must be at least 1 micro-batch per optimiser step (1: no accumulation)");

        public static readonly DiagnosticDescriptor PrecisionWithoutMatrixProducts = Warning("MD0419", TrainingCategory,
            "Mixed precision on a model without a matrix product",
            "Precision.BFloat16 runs Linear and TransformerBlock layers in bfloat16, and '{0}' has none: it trains in float32 all the same; drop Precision or add such a layer");

        public static readonly DiagnosticDescriptor RecomputeWithoutBlock = Error("MD0420", TrainingCategory,
            "Block recomputation on a model without a block",
            "Recompute.Blocks recomputes each TransformerBlock layer and each composed [Block] in backward, and '{0}' has none: nothing would be recomputed; drop Recompute or declare the repeated part as a [Block]");

        // MD02xx: the parallel plan ([Parallel]).
        public static readonly DiagnosticDescriptor InvalidWorldSize = Error("MD0201", ParallelCategory,
            "World size must be at least 1",
            "WorldSize is {0}; a run needs at least one rank");

        public static readonly DiagnosticDescriptor InvalidBucketSize = Error("MD0202", ParallelCategory,
            "Bucket size must be positive",
            "BucketSizeMB is {0}; gradients are all-reduced in buckets of a positive size (PyTorch's default is 25)");

        public static readonly DiagnosticDescriptor SettingOfOtherMode = Error("MD0203", ParallelCategory,
            "Setting does not apply to this parallel mode",
            "{0}");

        public static readonly DiagnosticDescriptor ParallelWithoutTrain = Error("MD0204", ParallelCategory,
            "[Parallel] needs [Train]",
            "[Parallel] on '{0}' has no training plan to run in parallel: add [Train(...)]");

        public static readonly DiagnosticDescriptor BatchNormPerRank = Warning("MD0205", ParallelCategory,
            "BatchNorm statistics are per rank",
            "Model '{0}' has BatchNorm layers ({1}) and trains on {2} ranks without SyncBatchNorm: each rank normalises with its own batch statistics, as in PyTorch's DDP; set SyncBatchNorm = true to average them");

        public static readonly DiagnosticDescriptor InvalidAsyncSetting = Error("MD0206", ParallelCategory,
            "Invalid asynchronous setting",
            "{0}");

        public static readonly DiagnosticDescriptor AsyncAtWorldSizeOne = Warning("MD0207", ParallelCategory,
            "Asynchronous training on one rank",
            "ParallelMode.Async at WorldSize = 1 has nothing to average: it trains as a single process");

        public static readonly DiagnosticDescriptor InvalidMaxRestarts = Error("MD0208", ParallelCategory,
            "Invalid restart count",
            "MaxRestarts is {0}; it must be 0 (a failed job stays failed) or more");

        public static readonly DiagnosticDescriptor RestartsAtWorldSizeOne = Warning("MD0209", ParallelCategory,
            "Restarts on one rank",
            "MaxRestarts applies to the ranks the trainer starts under mpirun; at WorldSize = 1 nothing is relaunched, so a failed run stays failed (resume it with --resume)");

        public static readonly DiagnosticDescriptor MemoryOverBudget = Error("MD0430", TrainingCategory,
            "The per-rank memory plan is above the budget",
            "The per-rank memory plan of '{0}' is {1} MiB ({2}), above MemoryBudgetMB = {3}: the largest term is {4}, {5} MiB; {6}");

        public static readonly DiagnosticDescriptor ShardAtWorldSizeOne = Warning("MD0210", ParallelCategory,
            "Sharding on one rank",
            "Shard = ShardLevel.{0} at WorldSize = 1 has no other rank to hold the shards: the one rank keeps the whole model state, as without sharding");

        public static readonly DiagnosticDescriptor ShardWithAsync = Error("MD0211", ParallelCategory,
            "Sharding needs synchronous training",
            "Shard = ShardLevel.{0} applies to ParallelMode.Sync: sharded ranks step one model together, while ParallelMode.Async ranks each step their own replica");


        // MD03xx: the optimisation plan ([Prune], [Quantize]).
        public static readonly DiagnosticDescriptor AmountOutOfRange = Error("MD0301", OptimizationCategory,
            "Pruning amount out of range",
            "Pruning amount: {0}");

        public static readonly DiagnosticDescriptor PruneTargetInvalid = Error("MD0302", OptimizationCategory,
            "Invalid pruning target",
            "Target '{0}' {1}");

        public static readonly DiagnosticDescriptor PruneWithoutTargets = Error("MD0303", OptimizationCategory,
            "[Prune] needs targets",
            "[Prune(PruneMethod.{0}, ...)] names no layers: set Targets = new[] {{ nameof(SomeLayer) }}");

        public static readonly DiagnosticDescriptor PruneAfterQuantize = Error("MD0304", OptimizationCategory,
            "[Quantize] must come after every [Prune]",
            "This [Prune] follows [Quantize]: passes run in declaration order, and pruning cannot follow int8 conversion; move [Quantize] last");

        public static readonly DiagnosticDescriptor StructuredCannotRewrite = Error("MD0305", OptimizationCategory,
            "Structured pruning cannot shrink this layer",
            "Structured pruning of '{0}': {1}");

        public static readonly DiagnosticDescriptor PruneDimOutOfRange = Error("MD0306", OptimizationCategory,
            "Pruning dimension out of range",
            "Dim = {0} is out of range for '{1}': a {2} weight has {3} dimensions");

        public static readonly DiagnosticDescriptor InvalidPassSetting = Error("MD0307", OptimizationCategory,
            "Invalid optimisation setting",
            "{0}");

        public static readonly DiagnosticDescriptor PassWithoutTrain = Error("MD0308", OptimizationCategory,
            "Optimisation pass needs [Train]",
            "[{0}] runs after training: add [Train(...)] to the class");

        public static readonly DiagnosticDescriptor NothingToQuantize = Warning("MD0309", OptimizationCategory,
            "Nothing to quantise",
            "QuantizeMode.{0} converts Linear, LSTM and GRU layers, and the model has none");

        public static readonly DiagnosticDescriptor PruneRecurrentLayer = Error("MD0118", OptimizationCategory,
            "Recurrent layers cannot be pruned by the plan",
            "Target '{0}' is an {1}: [Prune(PruneMethod.{2}, ...)] cannot prune it. Its weights are the gate matrices weight_ih_l0, weight_hh_l0, ... " +
            "(no single 'weight'), a structured cut would have to remove the same unit from every gate, both matrices and the next layer, and libtorch's " +
            "recurrent kernel reads its own copy of the weights, which a pruning mask does not reach; prune the Linear layers around it, or leave it out of Targets");

        public static readonly DiagnosticDescriptor PassReplacesField = Error("MD0310", OptimizationCategory,
            "A pass would replace a layer declared as a field",
            "{0}, but '{1}' is declared as a field, which the pass cannot replace; declare it as a partial property: 'public partial {2} {1} {{ get; }}'");

        public static readonly DiagnosticDescriptor CalibrationBatchesOutOfRange = Error("MD0311", OptimizationCategory,
            "Invalid CalibrationBatches",
            "CalibrationBatches is {0}; static int8 calibrates on at least one training batch");

        public static readonly DiagnosticDescriptor SecondQuantize = Error("MD0312", OptimizationCategory,
            "A model declares one [Quantize]",
            "This [Quantize(QuantizeMode.{0})] follows [Quantize(QuantizeMode.{1})]: {2}; keep one [Quantize]");

        public static readonly DiagnosticDescriptor CalibrationWithoutStatic = Warning("MD0313", OptimizationCategory,
            "CalibrationBatches applies to StaticInt8 only",
            "CalibrationBatches has no effect with QuantizeMode.{0}, which quantises activations per call; only QuantizeMode.StaticInt8 calibrates");

        public static readonly DiagnosticDescriptor NothingToQuantizeStatically = Warning("MD0314", OptimizationCategory,
            "Nothing to quantise statically",
            "QuantizeMode.StaticInt8 converts Conv2d and Linear layers, and the model has none");

        public static IReadOnlyList<DiagnosticDescriptor> All { get; } = typeof(DiagnosticDescriptors)
            .GetFields(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)
            .Where(f => f.FieldType == typeof(DiagnosticDescriptor))
            .Select(f => (DiagnosticDescriptor)f.GetValue(null)!)
            .ToArray();

        private static readonly Dictionary<string, DiagnosticDescriptor> ById = All.ToDictionary(d => d.Id);

        public static DiagnosticDescriptor Get(string id) => ById[id];

        public static DiagnosticDescriptor ForShapeError(ModelDsl.Shapes.ShapeErrorKind kind) => kind switch
        {
            ModelDsl.Shapes.ShapeErrorKind.SizeMismatch => SizeMismatch,
            ModelDsl.Shapes.ShapeErrorKind.RankMismatch => RankMismatch,
            ModelDsl.Shapes.ShapeErrorKind.OutputTooSmall => OutputTooSmall,
            ModelDsl.Shapes.ShapeErrorKind.NonPositive => NonPositive,
            ModelDsl.Shapes.ShapeErrorKind.ProbabilityOutOfRange => ProbabilityOutOfRange,
            ModelDsl.Shapes.ShapeErrorKind.IntegerInputRequired => IntegerInputRequired,
            ModelDsl.Shapes.ShapeErrorKind.FloatInputRequired => FloatInputRequired,
            ModelDsl.Shapes.ShapeErrorKind.DimOutOfRange => DimOutOfRange,
            ModelDsl.Shapes.ShapeErrorKind.NotInferable => NotInferable,
            ModelDsl.Shapes.ShapeErrorKind.TooLarge => TooLarge,
            ModelDsl.Shapes.ShapeErrorKind.SubmodelInputMismatch => SubmodelInputMismatch,
            ModelDsl.Shapes.ShapeErrorKind.HeadsDoNotDivide => HeadsDoNotDivide,
            ModelDsl.Shapes.ShapeErrorKind.SequenceTooLong => SequenceTooLong,
            ModelDsl.Shapes.ShapeErrorKind.NotASequence => NotASequence,
            ModelDsl.Shapes.ShapeErrorKind.MergeShapeMismatch => MergeShapeMismatch,
            ModelDsl.Shapes.ShapeErrorKind.ConcatMismatch => ConcatMismatch,
            ModelDsl.Shapes.ShapeErrorKind.RepeatedBlockShape => RepeatedBlockShape,
            _ => InvalidArgument,
        };

        private static DiagnosticDescriptor Error(string id, string category, string title, string message) =>
            new DiagnosticDescriptor(id, title, message, category, DiagnosticSeverity.Error, isEnabledByDefault: true,
                helpLinkUri: HelpBase + id.ToLowerInvariant());

        private static DiagnosticDescriptor Warning(string id, string category, string title, string message) =>
            new DiagnosticDescriptor(id, title, message, category, DiagnosticSeverity.Warning, isEnabledByDefault: true,
                helpLinkUri: HelpBase + id.ToLowerInvariant());
    }
}
