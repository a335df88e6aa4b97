using System;
using System.Collections.Generic;

namespace ModelDsl.Shapes
{
    /// <summary>The built-in layer kinds; <see cref="Model"/> is a composed [Model] class.</summary>
    internal enum LayerKind
    {
        Linear, Conv1d, Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, BatchNorm1d, BatchNorm2d, LayerNorm,
        Dropout, Flatten, Embedding, ReLU, GELU, SiLU, Tanh, Sigmoid, Softmax, LogSoftmax, Identity, Model,
        PositionalEmbedding, TransformerBlock, LSTM, GRU,
    }

    /// <summary>What kind of shape mistake a rule found; the generator maps each to a diagnostic id.</summary>
    internal enum ShapeErrorKind
    {
        /// <summary>An explicit size disagrees with the inferred one.</summary>
        SizeMismatch,
        /// <summary>The input has the wrong number of dimensions for the layer.</summary>
        RankMismatch,
        /// <summary>A kernel or window larger than its (padded) input: the output would have no elements.</summary>
        OutputTooSmall,
        /// <summary>A size, kernel, stride or dilation that must be positive is not; or padding is negative.</summary>
        NonPositive,
        /// <summary>A dropout probability outside [0, 1).</summary>
        ProbabilityOutOfRange,
        /// <summary>A layer that needs integer ids (embedding) gets floats.</summary>
        IntegerInputRequired,
        /// <summary>A layer that needs floating-point input gets integer ids.</summary>
        FloatInputRequired,
        /// <summary>A dim argument (softmax, flatten) outside the input's rank.</summary>
        DimOutOfRange,
        /// <summary>A size would have to be inferred from a symbolic dimension.</summary>
        NotInferable,
        /// <summary>Groups do not divide the channel counts; or padding exceeds half the window.</summary>
        InvalidArgument,
        /// <summary>Sizes so large the parameter count or a dimension overflows.</summary>
        TooLarge,
        /// <summary>A composed model's input does not accept this shape.</summary>
        SubmodelInputMismatch,
        /// <summary>Attention heads that do not divide the embedding size.</summary>
        HeadsDoNotDivide,
        /// <summary>A concrete sequence length above a positional table's maxLength.</summary>
        SequenceTooLong,
        /// <summary>A sequence layer (positional embedding, Transformer block) over an input that is not (B, T, C).</summary>
        NotASequence,
    }

    /// <summary>The arguments of one layer, flat. <c>-1</c> marks a size to infer.</summary>
    internal sealed class LayerParams
    {
        public long In { get; set; } = -1;          // in_features / in_channels / num_features / normalized_shape
        public long Out { get; set; } = -1;         // out_features / out_channels / embedding_dim
        public long Count { get; set; } = -1;       // num_embeddings
        // Windows. For the 2-D layers these are the height's values and the *W ones the width's (PyTorch's (h, w)
        // pairs); 1-D layers use the first set only.
        public long Kernel { get; set; } = -1;
        public long Stride { get; set; } = -1;      // pools: 0 or -1 mean "kernel size"
        public long Padding { get; set; }
        public long Dilation { get; set; } = 1;
        public long KernelW { get; set; } = -1;
        public long StrideW { get; set; } = -1;
        public long PaddingW { get; set; }
        public long DilationW { get; set; } = 1;
        /// <summary>How many values the kernel was given: 1 (square), or the length of a (height, width) array.</summary>
        public int KernelValues { get; set; } = 1;
        public long Groups { get; set; } = 1;
        public bool Bias { get; set; } = true;
        public double P { get; set; }
        public long Dim { get; set; }              // softmax dim, flatten start
        public long EndDim { get; set; } = -1;      // flatten end
        public long OutH { get; set; } = -1;
        public long OutW { get; set; } = -1;
        // Composition: the composed model's declared input and inferred output.
        public Dim[]? SubInput { get; set; }
        public bool SubInputIsInteger { get; set; }
        public Dim[]? SubOutput { get; set; }
        public long SubParams { get; set; }
        // Transformer block: heads, MLP ratio, blocks in sequence (P is the dropout); PositionalEmbedding uses Count
        // for maxLength and In for the vector size.
        public long Heads { get; set; } = 1;
        public long MlpRatio { get; set; } = 4;
        public long Repeat { get; set; } = 1;
        // LSTM/GRU: In is the input size, Out the hidden size.
        public long NumLayers { get; set; } = 1;
        public bool Bidirectional { get; set; }
        public bool BatchFirst { get; set; } = true;
    }

    internal sealed class ShapeError
    {
        public ShapeError(ShapeErrorKind kind, string message, string? argument, long inferred = -1)
        {
            Kind = kind; Message = message; Argument = argument; Inferred = inferred;
        }

        public ShapeErrorKind Kind { get; }
        public string Message { get; }
        /// <summary>The constructor parameter or named property to blame (e.g. <c>inFeatures</c>); null for the attribute.</summary>
        public string? Argument { get; }
        /// <summary>For a size mismatch, the size the input implies (what an IDE fix writes instead); otherwise -1.</summary>
        public long Inferred { get; }
    }

    /// <summary>The outcome of a layer rule: its output, parameter count and the sizes it resolved, or an error.</summary>
    internal sealed class LayerShape
    {
        public Dim[] Output = Array.Empty<Dim>();
        public bool OutputIsInteger;
        public long Parameters;
        /// <summary>The input size the layer is built with (inferred or explicit), -1 if none applies.</summary>
        public long ResolvedIn = -1;
        public ShapeError? Error;
    }

    /// <summary>
    /// PyTorch's shape rules for each layer kind (torch.nn docs, "Shape:" sections). Inputs are batched: the
    /// first dimension is the batch, so a 2-D conv needs (B, C, H, W), never PyTorch's unbatched (C, H, W).
    /// </summary>
    internal static class ShapeRules
    {
        public static LayerShape Infer(LayerKind kind, LayerParams p, Dim[] input, bool inputIsInteger)
        {
            try
            {
                return InferCore(kind, p, input, inputIsInteger);
            }
            catch (OverflowException)
            {
                return Fail(ShapeErrorKind.TooLarge, "the sizes are too large: a dimension or the parameter count overflows a 64-bit integer", null);
            }
        }

        private static LayerShape InferCore(LayerKind kind, LayerParams p, Dim[] x, bool isInt)
        {
            if (kind != LayerKind.Embedding && kind != LayerKind.Identity && kind != LayerKind.Flatten && kind != LayerKind.Model && isInt)
                return Fail(ShapeErrorKind.FloatInputRequired, $"{kind} needs floating-point input but gets integer ids {ShapeText.Format(x)}; put an [Embedding] first, or declare InputType = DType.Float32", null);

            switch (kind)
            {
                case LayerKind.Linear:
                {
                    if (p.Out < 1) return NonPositive("outFeatures", p.Out);
                    if (p.In != -1 && p.In < 1) return NonPositive("inFeatures", p.In);
                    if (x.Length < 1) return Rank(kind, "an input of at least 1 dimension", x);
                    var last = Resolve(kind, x[x.Length - 1], p.In, "inFeatures", "in-features", "the last dimension");
                    if (last.Error != null) return last;
                    var outDims = (Dim[])x.Clone();
                    outDims[outDims.Length - 1] = Dim.Of(p.Out);
                    return Ok(outDims, checked(last.ResolvedIn * p.Out + (p.Bias ? p.Out : 0)), last.ResolvedIn);
                }

                case LayerKind.Conv1d:
                case LayerKind.Conv2d:
                {
                    int spatial = kind == LayerKind.Conv1d ? 1 : 2;
                    if (p.Out < 1) return NonPositive("outChannels", p.Out);
                    if (p.In != -1 && p.In < 1) return NonPositive("inChannels", p.In);
                    if (KernelValues(kind, p) is { } arity) return arity;
                    for (int axis = 0; axis < spatial; axis++)
                    {
                        var w = Axis(p, axis, spatial);
                        if (w.Kernel < 1) return NonPositive("kernelSize", w.Kernel);
                        if (w.Stride < 1) return NonPositive(w.Name("Stride"), w.Stride);
                        if (w.Dilation < 1) return NonPositive(w.Name("Dilation"), w.Dilation);
                        if (w.Padding < 0) return Fail(ShapeErrorKind.NonPositive, $"{w.Name("Padding")} is {w.Padding}; it must be 0 or more", w.Name("Padding"));
                    }
                    if (p.Groups < 1) return NonPositive("Groups", p.Groups);
                    if (x.Length != spatial + 2)
                        return Rank(kind, spatial == 1 ? "a 3-D (B, C, L) input" : "a 4-D (B, C, H, W) input", x);
                    var ch = Resolve(kind, x[1], p.In, "inChannels", "in-channels", "dimension 1 (channels)");
                    if (ch.Error != null) return ch;
                    long inC = ch.ResolvedIn;
                    if (inC % p.Groups != 0 || p.Out % p.Groups != 0)
                        return Fail(ShapeErrorKind.InvalidArgument, $"Groups = {p.Groups} must divide both in-channels ({inC}) and out-channels ({p.Out})", "Groups");
                    var outDims = new Dim[x.Length];
                    outDims[0] = x[0];
                    outDims[1] = Dim.Of(p.Out);
                    long kernelElems = 1;
                    for (int i = 2; i < x.Length; i++)
                    {
                        var w = Axis(p, i - 2, spatial);
                        var d = Window(kind, x[i], i, w.Kernel, w.Stride, w.Padding, w.Dilation);
                        if (d.Error != null) return d;
                        outDims[i] = d.Output[0];
                        kernelElems = checked(kernelElems * w.Kernel);
                    }
                    long weights = checked(p.Out * (inC / p.Groups) * kernelElems);
                    return Ok(outDims, checked(weights + (p.Bias ? p.Out : 0)), inC);
                }

                case LayerKind.MaxPool2d:
                case LayerKind.AvgPool2d:
                {
                    if (KernelValues(kind, p) is { } arity) return arity;
                    for (int axis = 0; axis < 2; axis++)
                    {
                        var w = Axis(p, axis, 2);
                        if (w.Kernel < 1) return NonPositive("kernelSize", w.Kernel);
                        if (w.Stride < 0) return Fail(ShapeErrorKind.NonPositive, $"{w.Name("Stride")} is {w.Stride}; it must be at least 1 (or 0 for the kernel size)", w.Name("Stride"));
                        if (w.Dilation < 1) return NonPositive(w.Name("Dilation"), w.Dilation);
                        if (w.Padding < 0) return Fail(ShapeErrorKind.NonPositive, $"{w.Name("Padding")} is {w.Padding}; it must be 0 or more", w.Name("Padding"));
                        // PyTorch: "pad should be at most half of effective kernel size", per axis.
                        if (w.Padding * 2 > w.Kernel)
                            return Fail(ShapeErrorKind.InvalidArgument, $"{w.Name("Padding")} = {w.Padding} is more than half the kernel {(p.Kernel == p.KernelW ? "size" : axis == 0 ? "height" : "width")} {w.Kernel} (PyTorch requires pad <= kernel_size / 2)", w.Name("Padding"));
                    }
                    if (x.Length != 4) return Rank(kind, "a 4-D (B, C, H, W) input", x);
                    var outDims = (Dim[])x.Clone();
                    for (int i = 2; i < 4; i++)
                    {
                        var w = Axis(p, i - 2, 2);
                        var d = Window(kind, x[i], i, w.Kernel, w.Stride <= 0 ? w.Kernel : w.Stride, w.Padding, w.Dilation);
                        if (d.Error != null) return d;
                        outDims[i] = d.Output[0];
                    }
                    return Ok(outDims, 0, -1);
                }

                case LayerKind.AdaptiveAvgPool2d:
                {
                    if (p.OutH < 1) return NonPositive("outputHeight", p.OutH);
                    if (p.OutW < 1) return NonPositive("outputWidth", p.OutW);
                    if (x.Length != 4) return Rank(kind, "a 4-D (B, C, H, W) input", x);
                    var outDims = (Dim[])x.Clone();
                    outDims[2] = Dim.Of(p.OutH);
                    outDims[3] = Dim.Of(p.OutW);
                    return Ok(outDims, 0, -1);
                }

                case LayerKind.BatchNorm1d:
                case LayerKind.BatchNorm2d:
                {
                    if (p.In != -1 && p.In < 1) return NonPositive("numFeatures", p.In);
                    bool ok = kind == LayerKind.BatchNorm1d ? (x.Length == 2 || x.Length == 3) : x.Length == 4;
                    if (!ok) return Rank(kind, kind == LayerKind.BatchNorm1d ? "a 2-D (B, C) or 3-D (B, C, L) input" : "a 4-D (B, C, H, W) input", x);
                    var c = Resolve(kind, x[1], p.In, "numFeatures", "num-features", "dimension 1 (channels)");
                    if (c.Error != null) return c;
                    return Ok((Dim[])x.Clone(), checked(2 * c.ResolvedIn), c.ResolvedIn);
                }

                case LayerKind.LayerNorm:
                {
                    if (p.In != -1 && p.In < 1) return NonPositive("normalizedShape", p.In);
                    if (x.Length < 1) return Rank(kind, "an input of at least 1 dimension", x);
                    var n = Resolve(kind, x[x.Length - 1], p.In, "normalizedShape", "normalized shape", "the last dimension");
                    if (n.Error != null) return n;
                    return Ok((Dim[])x.Clone(), checked(2 * n.ResolvedIn), n.ResolvedIn);
                }

                case LayerKind.Dropout:
                    if (!(p.P >= 0 && p.P < 1))
                        return Fail(ShapeErrorKind.ProbabilityOutOfRange, $"dropout probability is {p.P.ToString(System.Globalization.CultureInfo.InvariantCulture)}; it must be in [0, 1)", "p");
                    return Ok((Dim[])x.Clone(), 0, -1);

                case LayerKind.Flatten:
                {
                    int rank = x.Length;
                    long start = p.Dim < 0 ? p.Dim + rank : p.Dim;
                    long end = p.EndDim < 0 ? p.EndDim + rank : p.EndDim;
                    if (start < 0 || start >= rank)
                        return Fail(ShapeErrorKind.DimOutOfRange, $"StartDim = {p.Dim} is out of range for a {rank}-D input {ShapeText.Format(x)}", "StartDim");
                    if (end < 0 || end >= rank)
                        return Fail(ShapeErrorKind.DimOutOfRange, $"EndDim = {p.EndDim} is out of range for a {rank}-D input {ShapeText.Format(x)}", "EndDim");
                    if (start > end)
                        return Fail(ShapeErrorKind.DimOutOfRange, $"StartDim ({p.Dim}) comes after EndDim ({p.EndDim}) for a {rank}-D input", "StartDim");
                    var outDims = new List<Dim>();
                    for (int i = 0; i < start; i++) outDims.Add(x[i]);
                    outDims.Add(Product(x, (int)start, (int)end));
                    for (long i = end + 1; i < rank; i++) outDims.Add(x[i]);
                    var flat = Ok(outDims.ToArray(), 0, -1);
                    flat.OutputIsInteger = isInt;
                    return flat;
                }

                case LayerKind.Embedding:
                {
                    if (p.Count < 1) return NonPositive("numEmbeddings", p.Count);
                    if (p.Out < 1) return NonPositive("embeddingDim", p.Out);
                    if (!isInt)
                        return Fail(ShapeErrorKind.IntegerInputRequired, $"Embedding looks up integer ids but gets floating-point input {ShapeText.Format(x)}; declare InputType = DType.Int64 on [Model]", null);
                    var outDims = new Dim[x.Length + 1];
                    Array.Copy(x, outDims, x.Length);
                    outDims[x.Length] = Dim.Of(p.Out);
                    return Ok(outDims, checked(p.Count * p.Out), -1);
                }

                case LayerKind.PositionalEmbedding:
                {
                    if (p.Count < 1) return NonPositive("maxLength", p.Count);
                    if (p.In != -1 && p.In < 1) return NonPositive("embeddingDim", p.In);
                    if (x.Length != 3) return NotSequence(kind, x);
                    var c = Resolve(kind, x[2], p.In, "embeddingDim", "embedding size", "the last dimension (C)");
                    if (c.Error != null) return c;
                    if (x[1].IsConcrete && x[1].Size > p.Count)
                        return Fail(ShapeErrorKind.SequenceTooLong, $"the input has T = {x[1].Size} positions, but the positional table holds maxLength = {p.Count}; raise maxLength or shorten the input", "maxLength");
                    return Ok((Dim[])x.Clone(), checked(p.Count * c.ResolvedIn), c.ResolvedIn);
                }

                case LayerKind.TransformerBlock:
                {
                    if (p.Heads < 1) return NonPositive("Heads", p.Heads);
                    if (p.MlpRatio < 1) return NonPositive("MlpRatio", p.MlpRatio);
                    if (p.Repeat < 1) return NonPositive("Repeat", p.Repeat);
                    if (!(p.P >= 0 && p.P < 1))
                        return Fail(ShapeErrorKind.ProbabilityOutOfRange, $"Dropout is {p.P.ToString(System.Globalization.CultureInfo.InvariantCulture)}; it must be in [0, 1)", "Dropout");
                    if (p.In != -1 && p.In < 1) return NonPositive("EmbeddingDim", p.In);
                    if (x.Length != 3) return NotSequence(kind, x);
                    var c = Resolve(kind, x[2], p.In, "EmbeddingDim", "embedding size", "the last dimension (C)");
                    if (c.Error != null) return c;
                    long dim = c.ResolvedIn;
                    if (dim % p.Heads != 0)
                        return Fail(ShapeErrorKind.HeadsDoNotDivide, $"Heads = {p.Heads} does not divide the embedding size C = {dim}: each head takes C / Heads of it", "Heads");
                    // Per block: ln_1 2C, in_proj 3C² + 3C, out_proj C² + C, ln_2 2C, linear1 rC² + rC, linear2 rC² + C.
                    long perBlock = checked((4 + 2 * p.MlpRatio) * dim * dim + (9 + p.MlpRatio) * dim);
                    return Ok((Dim[])x.Clone(), checked(p.Repeat * perBlock), dim);
                }

                case LayerKind.LSTM:
                case LayerKind.GRU:
                {
                    if (p.Out < 1) return NonPositive("hiddenSize", p.Out);
                    if (p.In != -1 && p.In < 1) return NonPositive("inputSize", p.In);
                    if (p.NumLayers < 1) return NonPositive("NumLayers", p.NumLayers);
                    if (x.Length != 3) return NotSequence(kind, x);
                    var c = Resolve(kind, x[2], p.In, "inputSize", "input size", "the last dimension (C)");
                    if (c.Error != null) return c;
                    // nn.LSTM/nn.GRU: per layer and direction weight_ih (G·H, in), weight_hh (G·H, H) and two biases of
                    // G·H, with G = 4 gates (LSTM) or 3 (GRU); layers after the first take the H·directions outputs.
                    long gates = kind == LayerKind.LSTM ? 4 : 3, h = p.Out, directions = p.Bidirectional ? 2 : 1;
                    long first = checked(gates * h * (c.ResolvedIn + h + 2));
                    long later = checked(gates * h * (directions * h + h + 2));
                    long parameters = checked(directions * (first + (p.NumLayers - 1) * later));
                    return Ok(new[] { x[0], x[1], Dim.Of(checked(directions * h)) }, parameters, c.ResolvedIn);
                }

                case LayerKind.Softmax:
                case LayerKind.LogSoftmax:
                {
                    if (p.Dim < -x.Length || p.Dim >= x.Length)
                        return Fail(ShapeErrorKind.DimOutOfRange, $"dim = {p.Dim} is out of range for a {x.Length}-D input {ShapeText.Format(x)} (expected [{-x.Length}, {x.Length - 1}])", "dim");
                    return Ok((Dim[])x.Clone(), 0, -1);
                }

                case LayerKind.ReLU:
                case LayerKind.GELU:
                case LayerKind.SiLU:
                case LayerKind.Tanh:
                case LayerKind.Sigmoid:
                    return Ok((Dim[])x.Clone(), 0, -1);

                case LayerKind.Identity:
                {
                    var id = Ok((Dim[])x.Clone(), 0, -1);
                    id.OutputIsInteger = isInt;
                    return id;
                }

                case LayerKind.Model:
                    return Compose(p, x, isInt);

                default:
                    return Fail(ShapeErrorKind.InvalidArgument, $"unknown layer kind {kind}", null);
            }
        }

        private static LayerShape Compose(LayerParams p, Dim[] x, bool isInt)
        {
            var expected = p.SubInput ?? Array.Empty<Dim>();
            var expectedText = ShapeText.Format(expected);
            if (p.SubInputIsInteger != isInt)
                return Fail(ShapeErrorKind.SubmodelInputMismatch, $"the composed model takes {(p.SubInputIsInteger ? "integer ids" : "floating-point input")} {expectedText} but gets {(isInt ? "integer ids" : "floating-point input")} {ShapeText.Format(x)}", null);
            if (expected.Length != x.Length)
                return Fail(ShapeErrorKind.SubmodelInputMismatch, $"the composed model takes a {expected.Length}-D input {expectedText} but gets {x.Length}-D {ShapeText.Format(x)}", null);

            // Each symbol of the composed model binds to what the caller passes (B to B, T to 16, ...), consistently.
            var bindings = new Dictionary<string, Dim>(StringComparer.Ordinal);
            for (int i = 0; i < x.Length; i++)
            {
                var want = expected[i];
                if (want.IsConcrete)
                {
                    if (!(x[i].IsConcrete && x[i].Size == want.Size))
                        return Fail(ShapeErrorKind.SubmodelInputMismatch, $"the composed model takes {expectedText} but gets {ShapeText.Format(x)}: dimension {i} is {x[i]}, expected {want.Size}", null);
                }
                else if (bindings.TryGetValue(want.Symbol!, out var bound))
                {
                    if (!bound.Equals(x[i]))
                        return Fail(ShapeErrorKind.SubmodelInputMismatch, $"the composed model takes {expectedText} but gets {ShapeText.Format(x)}: '{want.Symbol}' would be both {bound} and {x[i]}", null);
                }
                else bindings[want.Symbol!] = x[i];
            }

            var sub = p.SubOutput ?? Array.Empty<Dim>();
            var outDims = new Dim[sub.Length];
            for (int i = 0; i < sub.Length; i++)
                outDims[i] = !sub[i].IsConcrete && bindings.TryGetValue(sub[i].Symbol!, out var b) ? b : sub[i];
            return Ok(outDims, p.SubParams, -1);
        }

        /// <summary>One spatial axis of a window: its kernel, stride, padding and dilation.</summary>
        private readonly struct WindowAxis
        {
            private readonly LayerParams _p;
            private readonly string _suffix;

            public WindowAxis(LayerParams p, long kernel, long stride, long padding, long dilation, string suffix)
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
        private static WindowAxis Axis(LayerParams p, int axis, int spatial) =>
            spatial == 1 ? new WindowAxis(p, p.Kernel, p.Stride, p.Padding, p.Dilation, "")
            : axis == 0 ? new WindowAxis(p, p.Kernel, p.Stride, p.Padding, p.Dilation, "H")
            : new WindowAxis(p, p.KernelW, p.StrideW, p.PaddingW, p.DilationW, "W");

        /// <summary>A 2-D kernel is one number or a (height, width) pair, as PyTorch's _pair accepts.</summary>
        private static LayerShape? KernelValues(LayerKind kind, LayerParams p) =>
            p.KernelValues == 1 || (p.KernelValues == 2 && kind != LayerKind.Conv1d) ? null
            : Fail(ShapeErrorKind.InvalidArgument, $"kernelSize has {p.KernelValues} values; {kind} takes {(kind == LayerKind.Conv1d ? "one number" : "one number or two, (height, width)")}", "kernelSize");

        /// <summary>Resolves an input size from a dim: the inferred value, checked against an explicit one.</summary>
        private static LayerShape Resolve(LayerKind kind, Dim actual, long explicitSize, string argument, string what, string where)
        {
            if (!actual.IsConcrete)
            {
                if (explicitSize == -1)
                    return Fail(ShapeErrorKind.NotInferable, $"{kind} cannot infer its {what}: {where} of its input is the symbol '{actual.Symbol}', known only at run time; give it explicitly", null);
                return new LayerShape { ResolvedIn = explicitSize };
            }
            if (explicitSize != -1 && explicitSize != actual.Size)
                return new LayerShape { Error = new ShapeError(ShapeErrorKind.SizeMismatch, $"{kind} declares {what} = {explicitSize}, but its input has {actual.Size} ({where})", argument, actual.Size) };
            return new LayerShape { ResolvedIn = actual.Size };
        }

        /// <summary>PyTorch's output-size formula: floor((L + 2p - d(k-1) - 1) / s) + 1.</summary>
        private static LayerShape Window(LayerKind kind, Dim input, int dimIndex, long k, long s, long pad, long dil)
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
                return Fail(ShapeErrorKind.OutputTooSmall, $"{kind} kernel {(dil > 1 ? $"(effective size {effective})" : k.ToString(System.Globalization.CultureInfo.InvariantCulture))} is larger than dimension {dimIndex} of its input ({input.Size}{(pad > 0 ? $" + 2×{pad} padding" : "")}); the output would be empty", "kernelSize");
            long size = (padded - effective) / s + 1;
            return new LayerShape { Output = new[] { Dim.Of(size) } };
        }

        private static Dim Product(Dim[] x, int start, int end)
        {
            long size = 1;
            var symbols = new List<string>();
            for (int i = start; i <= end; i++)
            {
                if (x[i].IsConcrete) size = checked(size * x[i].Size);
                else symbols.Add(x[i].Symbol!);
            }
            if (symbols.Count == 0) return Dim.Of(size);
            if (size != 1) symbols.Add(size.ToString(System.Globalization.CultureInfo.InvariantCulture));
            return Dim.Sym(string.Join("*", symbols));
        }

        private static LayerShape Ok(Dim[] output, long parameters, long resolvedIn) =>
            new LayerShape { Output = output, Parameters = parameters, ResolvedIn = resolvedIn };

        private static LayerShape Fail(ShapeErrorKind kind, string message, string? argument) =>
            new LayerShape { Error = new ShapeError(kind, message, argument) };

        private static LayerShape NonPositive(string argument, long value) =>
            Fail(ShapeErrorKind.NonPositive, $"{argument} is {value}; it must be at least 1", argument);

        private static LayerShape NotSequence(LayerKind kind, Dim[] x) =>
            Fail(ShapeErrorKind.NotASequence, $"{kind} needs a sequence of vectors (B, T, C), but gets {x.Length}-D {ShapeText.Format(x)}" +
                (x.Length == 2 ? "; token ids go through an [Embedding] first" : ""), null);

        private static LayerShape Rank(LayerKind kind, string expected, Dim[] x) =>
            Fail(ShapeErrorKind.RankMismatch, $"{kind} needs {expected}, but gets {x.Length}-D {ShapeText.Format(x)}", null);
    }
}
