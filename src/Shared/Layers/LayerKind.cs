using System.Globalization;
#if MODELDSL_GENERATOR
using ModelDsl.Generators.Emit;
#endif

// One descriptor per layer kind, linked into the generator (reading, shape rules, emission, pass checks) and the
// runtime (the structured-cut walk over real modules), so the compiler and the runtime know a kind from one file.
// Adding a kind: its attribute in src/Dsl/Layers.cs, its descriptor (a file here deriving from LayerKind), and its
// line in the registry below (README.md, "Architecture").
namespace ModelDsl.Shapes
{
    /// <summary>The layer arguments written at the use site, by attribute parameter or property name.</summary>
    internal interface ILayerArguments
    {
        /// <summary>The first of <paramref name="names"/> written as an integer, or null.</summary>
        long? Long(params string[] names);
        /// <summary>A floating-point argument, or null.</summary>
        double? Double(string name);
        /// <summary>A bool argument, or null.</summary>
        bool? Bool(string name);
        /// <summary>A string argument, or null.</summary>
        string? String(string name);
        /// <summary>An integer array argument (a (height, width) kernel), or null.</summary>
        long[]? LongArray(string name);
        /// <summary>A string array argument (a merge's sources; null elements for null strings), or null.</summary>
        string?[]? StringArray(string name);
        /// <summary>Whether the argument was written at the use site.</summary>
        bool Has(string name);
    }

    /// <summary>The arguments only one kind has, as a value-equatable record its descriptor declares.</summary>
    internal abstract record KindArguments;

    /// <summary>
    /// A layer kind: how its attribute's arguments are read, its shape rule and parameter count, the module it builds
    /// and how that is written in generated code, and what the optimisation passes may do with it. One instance per
    /// kind (<see cref="All"/>), compared by reference; <see cref="Model"/> is a composed [Model] class.
    /// </summary>
    internal abstract class LayerKind
    {
        // The registry: one line per kind. The order is the order the "not a layer" diagnostic lists them in.
        public static readonly LayerKind Linear = new LinearKind();
        public static readonly LayerKind Conv1d = new ConvKind("Conv1d", 1);
        public static readonly LayerKind Conv2d = new ConvKind("Conv2d", 2);
        public static readonly LayerKind MaxPool2d = new PoolKind("MaxPool2d", max: true);
        public static readonly LayerKind AvgPool2d = new PoolKind("AvgPool2d", max: false);
        public static readonly LayerKind AdaptiveAvgPool2d = new AdaptiveAvgPool2dKind();
        public static readonly LayerKind BatchNorm1d = new BatchNormKind("BatchNorm1d", 1);
        public static readonly LayerKind BatchNorm2d = new BatchNormKind("BatchNorm2d", 2);
        public static readonly LayerKind LayerNorm = new LayerNormKind();
        public static readonly LayerKind Dropout = new DropoutKind();
        public static readonly LayerKind Flatten = new FlattenKind();
        public static readonly LayerKind Embedding = new EmbeddingKind();
        public static readonly LayerKind ReLU = new ActivationKind("ReLU");
        public static readonly LayerKind GELU = new ActivationKind("GELU");
        public static readonly LayerKind SiLU = new ActivationKind("SiLU");
        public static readonly LayerKind Tanh = new ActivationKind("Tanh");
        public static readonly LayerKind Sigmoid = new ActivationKind("Sigmoid");
        public static readonly LayerKind Softmax = new SoftmaxKind("Softmax");
        public static readonly LayerKind LogSoftmax = new SoftmaxKind("LogSoftmax");
        public static readonly LayerKind Identity = new IdentityKind();
        public static readonly LayerKind Model = new ModelKind();
        public static readonly LayerKind PositionalEmbedding = new PositionalEmbeddingKind();
        public static readonly LayerKind TransformerBlock = new TransformerBlockKind();
        public static readonly LayerKind LSTM = new RecurrentKind("LSTM", gates: 4);
        public static readonly LayerKind GRU = new RecurrentKind("GRU", gates: 3);
        public static readonly LayerKind LeakyReLU = new LeakyReLUKind();
        public static readonly LayerKind Add = new BroadcastMergeKind("Add", "add", "+");
        public static readonly LayerKind Multiply = new BroadcastMergeKind("Multiply", "mul", "*");
        public static readonly LayerKind Concat = new ConcatKind();

        /// <summary>Every kind, in registry order.</summary>
        public static readonly IReadOnlyList<LayerKind> All = new[]
        {
            Linear, Conv1d, Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, BatchNorm1d, BatchNorm2d, LayerNorm,
            Dropout, Flatten, Embedding, ReLU, GELU, SiLU, Tanh, Sigmoid, Softmax, LogSoftmax, Identity, Model,
            PositionalEmbedding, TransformerBlock, LSTM, GRU, LeakyReLU, Add, Multiply, Concat,
        };

        private static readonly Dictionary<string, LayerKind> ByName = Index(k => k.Name);
        private static readonly Dictionary<string, LayerKind> ByModule = Index(k => k.ModuleType);

        protected LayerKind(string name) { Name = name; }

        /// <summary>The kind's name: its attribute without <c>Attribute</c>, and the table's Type column.</summary>
        public string Name { get; }

        /// <summary>The kind whose attribute is <c>[name]</c> (never <see cref="Model"/>, which has no attribute).</summary>
        public static bool TryGet(string name, out LayerKind kind) =>
            ByName.TryGetValue(name, out kind!) && kind != Model;

        /// <summary>The kind whose module has the full type name <paramref name="moduleType"/>, or null.</summary>
        public static LayerKind? ForModule(string? moduleType) =>
            moduleType is not null && ByModule.TryGetValue(moduleType, out var kind) ? kind : null;

        private static Dictionary<string, LayerKind> Index(Func<LayerKind, string> key)
        {
            var index = new Dictionary<string, LayerKind>(StringComparer.Ordinal);
            // Add, not the indexer: two kinds under one name or module type are a registry mistake, not a silent overwrite.
            foreach (var kind in All) index.Add(key(kind), kind);
            return index;
        }

        public override string ToString() => Name;

        // ---- Module -------------------------------------------------------------------------------------------

        /// <summary>The full name of the module type the layer's property must have (TorchSharp's, or the runtime's own).</summary>
        public virtual string ModuleType => "TorchSharp.Modules." + Name;

        /// <summary>
        /// Whether the layer runs through a <c>RecurrentLayer</c> slot that passes only its output sequence on (so it
        /// must be a partial property, and a hand-written forward calls the slot).
        /// </summary>
        public virtual bool Recurrent => false;

        // ---- Arguments ----------------------------------------------------------------------------------------

        /// <summary>Reads what only this kind has (into <see cref="LayerParams.Own"/>), after the common sizes and bias.</summary>
        public virtual void Read(LayerParams p, ILayerArguments arguments) { }

        // ---- Shapes -------------------------------------------------------------------------------------------

        /// <summary>Whether the layer takes integer ids (the others need floating-point input).</summary>
        public virtual bool AcceptsIntegerInput => false;

        /// <summary>
        /// PyTorch's shape rule: the output, parameter count and resolved input size, or an error, for a layer of one
        /// input. A merge kind (<see cref="IsMerge"/>: Add, Multiply, Concat) has <see cref="InferMerge"/> over its
        /// inputs' shapes beside this one.
        /// </summary>
        public abstract LayerShape Infer(LayerParams p, Dim[] x, bool isInt);

        /// <summary>Whether the layer merges the outputs of the layers it names (<see cref="LayerParams.Sources"/>).</summary>
        public virtual bool IsMerge => false;

        /// <summary>
        /// A merge's shape rule over its sources (<paramref name="names"/>, their shapes <paramref name="inputs"/>, in
        /// order); only for <see cref="IsMerge"/> kinds.
        /// </summary>
        public virtual LayerShape InferMerge(LayerParams p, IReadOnlyList<string> names, IReadOnlyList<Dim[]> inputs) =>
            throw new NotSupportedException($"{Name} takes one input");

        /// <summary>The argument naming a merge's source <paramref name="index"/> (a constructor parameter, or <c>[i]</c> for the i-th positional argument).</summary>
        public virtual string SourceArgument(int index) => "From";

        /// <summary>The input size inference supplies, in words (null when the layer needs none).</summary>
        public virtual string? InputSizeName => null;

        /// <summary>The attribute with that size written out, for the diagnostic when it cannot be inferred.</summary>
        public virtual string ExplicitExample(LayerParams p) => $"{Name}(numFeatures)";

        /// <summary>An input of the rank the layer takes, symbolic but for <paramref name="c"/> (the size it states).</summary>
        public virtual Dim[] StandInInput(LayerParams p, Dim b, Dim c) => new[] { b };

        /// <summary>Whether that stand-in input holds integer ids.</summary>
        public virtual bool StandInIsInteger(LayerParams p) => false;

        // ---- Mixed precision ----------------------------------------------------------------------------------

        /// <summary>
        /// Where the layer runs under <c>Precision.BFloat16</c>, as PyTorch's CPU autocast lists ops: a matrix product
        /// in bfloat16, a norm or softmax in float32, anything else in the dtype it is given. The compiler warns when
        /// no layer runs in bfloat16; the runtime casts each layer's working copy and input by it.
        /// </summary>
        public virtual AutocastPolicy Autocast => AutocastPolicy.AsInput;

        /// <summary>Whether <c>Recompute.Blocks</c> recomputes the layer: a TransformerBlock (each of its copies) or a composed [Block].</summary>
        public bool IsRecomputedBlock => this == TransformerBlock || this == Model;

        // ---- Optimisation passes ------------------------------------------------------------------------------

        /// <summary>Dimensions of the layer's <c>weight</c>, the tensor pruning methods target; 0 when it has none.</summary>
        public virtual int WeightRank => 0;

        /// <summary>Whether [Quantize(DynamicInt8)] has int8 layers to put in its place.</summary>
        public virtual bool Quantizes => false;

        /// <summary>Whether [Quantize] replaces the layer's module through its slot (so a field cannot hold it).</summary>
        public virtual bool QuantizeReplacesModule => false;

        /// <summary>Whether a structured cut's channels pass through it unchanged (elementwise, pooling, dropout).</summary>
        public virtual bool ChannelsPassThrough => false;

        /// <summary>Whether structured pruning can remove the layer's outputs (Linear neurons, Conv2d channels).</summary>
        public virtual bool CanCut => false;

        // ---- Memory plan --------------------------------------------------------------------------------------

        /// <summary>
        /// Bytes of activations the layer leaves alive for backward when it outputs <paramref name="outputElements"/>
        /// elements of <paramref name="elementBytes"/> each (MemoryPlan, docs/memory.md): its output by default, as every
        /// layer output of a TorchSharp step stays referenced until the step's dispose scope ends; a view, nothing; more
        /// where autograd saves tensors besides the output (a max pool's int64 indices, dropout's mask).
        /// </summary>
        public virtual long ActivationBytes(KindArguments? own, long outputElements, int elementBytes) => checked(outputElements * elementBytes);

        /// <summary>
        /// Bytes per element of the layer's output under bfloat16 mixed precision when its input has
        /// <paramref name="inputBytes"/> per element, by <see cref="Autocast"/>: 2 for a bfloat16 layer, 4 for a float32 one,
        /// the input's otherwise (an embedding's float32 table gives float32).
        /// </summary>
        public virtual int MixedOutputBytes(int inputBytes) => Autocast switch
        {
            AutocastPolicy.BFloat16 => 2,
            AutocastPolicy.Float32 => 4,
            _ => inputBytes,
        };

        /// <summary><see cref="ActivationBytes"/> under bfloat16 mixed precision, for an input of <paramref name="inputBytes"/> per element.</summary>
        public virtual long MixedActivationBytes(KindArguments? own, long outputElements, int inputBytes) =>
            ActivationBytes(own, outputElements, MixedOutputBytes(inputBytes));

#if MODELDSL_GENERATOR
        // ---- Emission (generator only) ------------------------------------------------------------------------

        protected const string Nn = "global::TorchSharp.torch.nn";

        /// <summary>The expression that creates the module, with every inferred size written out.</summary>
        public virtual string Construct(LayerSpec layer) => $"{Nn}.{Name}()";

        /// <summary>A comment line before the construction (the argument order, what the module does), or null.</summary>
        public virtual string? ConstructComment(LayerSpec layer) => null;

        /// <summary>Elements of the layer's <c>weight</c>: its parameters less the bias.</summary>
        public virtual long WeightCount(LayerSpec layer) => layer.Parameters;

        /// <summary>
        /// Elements of each trainable parameter tensor, in registration order (the memory plan partitions whole tensors
        /// across ranks as ZeroRedundancyOptimizer does); by default one tensor of all the layer's parameters.
        /// </summary>
        public virtual IEnumerable<long> ParameterTensors(LayerSpec layer) =>
            layer.Parameters > 0 ? new[] { layer.Parameters } : Array.Empty<long>();

        /// <summary>A weight and, when the layer has one, its bias of <c>Out</c> elements (Linear, convolutions).</summary>
        protected IEnumerable<long> WeightAndBias(LayerSpec layer)
        {
            long weight = WeightCount(layer);
            if (weight > 0) yield return weight;
            if (layer.Args.Bias) yield return layer.Args.Out;
        }

        /// <summary>The weight's size along <paramref name="dim"/> (non-negative, below <see cref="WeightRank"/>): dim 0 holds the outputs pruning removes.</summary>
        public virtual long WeightSize(LayerArgs a, int dim) => dim == 0 ? a.Out : a.In;

        protected static string N(long v) => v.ToString(CultureInfo.InvariantCulture);
        protected static string B(bool v) => v ? "true" : "false";
        protected static string D(double v) => CSharpLiterals.Double(v);
        protected static string P(long h, long w) => $"({N(h)}L, {N(w)}L)";
#endif

        // ---- Shape-rule helpers -------------------------------------------------------------------------------

        /// <summary>One spatial axis of a window: its kernel, stride, padding and dilation.</summary>
        protected readonly struct WindowAxis
        {
            private readonly WindowArguments _p;
            private readonly string _suffix;

            public WindowAxis(WindowArguments p, long kernel, long stride, long padding, long dilation, string suffix)
            {
                _p = p; Kernel = kernel; Stride = stride; Padding = padding; Dilation = dilation; _suffix = suffix;
            }

            public long Kernel { get; }
            public long Stride { get; }
            public long Padding { get; }
            public long Dilation { get; }

            /// <summary>
            /// The argument to blame: <c>Stride</c> when both axes have the same value (a 1-D layer, or a 2-D one
            /// given <c>Stride</c>), <c>StrideH</c> or <c>StrideW</c> when the axes differ.
            /// </summary>
            public string Name(string argument)
            {
                bool differ = _suffix.Length > 0 && argument switch
                {
                    "Stride" => _p.Stride != _p.StrideW,
                    "Padding" => _p.Padding != _p.PaddingW,
                    "Dilation" => _p.Dilation != _p.DilationW,
                    _ => false,
                };
                return differ ? argument + _suffix : argument;
            }
        }

        /// <summary>The window of axis 0 (height, or the only axis of a 1-D layer) or 1 (width).</summary>
        protected static WindowAxis Axis(WindowArguments p, int axis, int spatial) =>
            spatial == 1 ? new WindowAxis(p, p.Kernel, p.Stride, p.Padding, p.Dilation, "")
            : axis == 0 ? new WindowAxis(p, p.Kernel, p.Stride, p.Padding, p.Dilation, "H")
            : new WindowAxis(p, p.KernelW, p.StrideW, p.PaddingW, p.DilationW, "W");

        /// <summary>
        /// The checks of a window, axis by axis: a kernel (one number, or a (height, width) pair for a 2-D layer, as
        /// PyTorch's _pair accepts) and dilation of at least 1, padding of 0 or more, a stride of at least 1 (a pool's
        /// 0 means "the kernel size") and, for a pool, padding at most half the kernel.
        /// </summary>
        protected LayerShape? CheckWindow(WindowArguments window, int spatial, bool pool)
        {
            if (!(window.KernelValues == 1 || (window.KernelValues == 2 && spatial == 2)))
                return Fail(ShapeErrorKind.InvalidArgument, $"kernelSize has {window.KernelValues} values; {Name} takes {(spatial == 1 ? "one number" : "one number or two, (height, width)")}", "kernelSize");
            for (int axis = 0; axis < spatial; axis++)
            {
                var w = Axis(window, axis, spatial);
                if (w.Kernel < 1) return NonPositive("kernelSize", w.Kernel);
                if (!pool && w.Stride < 1) return NonPositive(w.Name("Stride"), w.Stride);
                if (pool && w.Stride < 0) return Fail(ShapeErrorKind.NonPositive, $"{w.Name("Stride")} is {w.Stride}; it must be at least 1 (or 0 for the kernel size)", w.Name("Stride"));
                if (w.Dilation < 1) return NonPositive(w.Name("Dilation"), w.Dilation);
                if (w.Padding < 0) return NonNegative(w.Name("Padding"), w.Padding);
                // PyTorch: "pad should be at most half of effective kernel size", per axis.
                if (pool && w.Padding * 2 > w.Kernel)
                    return Fail(ShapeErrorKind.InvalidArgument, $"{w.Name("Padding")} = {w.Padding} is more than half the kernel {(window.Kernel == window.KernelW ? "size" : axis == 0 ? "height" : "width")} {w.Kernel} (PyTorch requires pad <= kernel_size / 2)", w.Name("Padding"));
            }
            return null;
        }

        /// <summary>Resolves an input size from a dim: the inferred value, checked against an explicit one.</summary>
        protected LayerShape Resolve(Dim actual, long explicitSize, string argument, string what, string where)
        {
            if (!actual.IsConcrete)
            {
                if (explicitSize == -1)
                    return Fail(ShapeErrorKind.NotInferable, $"{Name} cannot infer its {what}: {where} of its input is the symbol '{actual.Symbol}', known only at run time; give it explicitly", null);
                return new LayerShape { ResolvedIn = explicitSize };
            }
            if (explicitSize != -1 && explicitSize != actual.Size)
                return new LayerShape { Error = new ShapeError(ShapeErrorKind.SizeMismatch, $"{Name} declares {what} = {explicitSize}, but its input has {actual.Size} ({where})", argument, actual.Size) };
            return new LayerShape { ResolvedIn = actual.Size };
        }

        /// <summary>PyTorch's output-size formula: floor((L + 2p - d(k-1) - 1) / s) + 1.</summary>
        protected LayerShape Window(Dim input, int dimIndex, long k, long s, long pad, long dil)
        {
            long effective = checked(dil * (k - 1) + 1);
            if (!input.IsConcrete)
            {
                // Size-preserving windows keep the symbol; otherwise the size is unknown until run time.
                bool preserving = s == 1 && checked(2 * pad) == effective - 1;
                return new LayerShape { Output = new[] { preserving ? input : Dim.Sym("?") } };
            }
            long padded = checked(input.Size + 2 * pad);
            if (padded < effective)
                return Fail(ShapeErrorKind.OutputTooSmall, $"{Name} kernel {(dil > 1 ? $"(effective size {effective})" : k.ToString(CultureInfo.InvariantCulture))} is larger than dimension {dimIndex} of its input ({input.Size}{(pad > 0 ? $" + 2×{pad} padding" : "")}); the output would be empty", "kernelSize");
            long size = (padded - effective) / s + 1;
            return new LayerShape { Output = new[] { Dim.Of(size) } };
        }

        protected static LayerShape Ok(Dim[] output, long parameters, long resolvedIn) =>
            new LayerShape { Output = output, Parameters = parameters, ResolvedIn = resolvedIn };

        protected static LayerShape Fail(ShapeErrorKind kind, string message, string? argument) =>
            new LayerShape { Error = new ShapeError(kind, message, argument) };

        protected static LayerShape NonPositive(string argument, long value) =>
            Fail(ShapeErrorKind.NonPositive, $"{argument} is {value}; it must be at least 1", argument);

        protected static LayerShape NonNegative(string argument, long value) =>
            Fail(ShapeErrorKind.NonPositive, $"{argument} is {value}; it must be 0 or more", argument);

        protected LayerShape NotSequence(Dim[] x) =>
            Fail(ShapeErrorKind.NotASequence, $"{Name} needs a sequence of vectors (B, T, C), but gets {x.Length}-D {ShapeText.Format(x)}" +
                (x.Length == 2 ? "; token ids go through an [Embedding] first" : ""), null);

        protected LayerShape Rank(string expected, Dim[] x) =>
            Fail(ShapeErrorKind.RankMismatch, $"{Name} needs {expected}, but gets {x.Length}-D {ShapeText.Format(x)}", null);

        protected static string Text(double value) => value.ToString(CultureInfo.InvariantCulture);

        /// <summary><paramref name="count"/> copies of <paramref name="d"/>: a stand-in input of any rank a dim argument may need.</summary>
        protected static Dim[] Repeated(Dim d, int count)
        {
            var dims = new Dim[count];
            for (int i = 0; i < count; i++) dims[i] = d;
            return dims;
        }
    }

    /// <summary>A layer kind with arguments of its own, the record <typeparamref name="TArguments"/> its Read sets.</summary>
    internal abstract class LayerKind<TArguments> : LayerKind where TArguments : KindArguments
    {
        protected LayerKind(string name) : base(name) { }

        /// <summary>This kind's own arguments, as its Read stored them.</summary>
        protected static TArguments Own(LayerParams p) => (TArguments)p.Own!;

#if MODELDSL_GENERATOR
        /// <summary>This kind's own arguments, resolved.</summary>
        protected static TArguments Own(LayerArgs a) => (TArguments)a.Own!;
#endif
    }

    /// <summary>How a layer runs under mixed precision (<see cref="LayerKind.Autocast"/>).</summary>
    internal enum AutocastPolicy
    {
        /// <summary>In the dtype of its input (activations, pooling, dropout, embeddings' lookups).</summary>
        AsInput,
        /// <summary>In bfloat16, input and weights (autocast's lower-precision list: linear, matmul).</summary>
        BFloat16,
        /// <summary>In float32, input and weights (autocast's float32 list: norms, softmax).</summary>
        Float32,
    }
}
