namespace ModelDsl.Shapes
{
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
        /// <summary>An element-wise merge (Add, Multiply) of shapes that do not broadcast.</summary>
        MergeShapeMismatch,
        /// <summary>A Concat whose dim is out of range or whose other dims differ.</summary>
        ConcatMismatch,
        /// <summary>A repeated block whose output shape differs from its input's.</summary>
        RepeatedBlockShape,
    }

    /// <summary>
    /// The common arguments of one layer (sizes, bias), and its kind's own typed ones in
    /// <see cref="Own"/>. <c>-1</c> marks a size to infer.
    /// </summary>
    internal sealed class LayerParams
    {
        public long In { get; set; } = -1;          // in_features / in_channels / num_features / normalized_shape
        public long Out { get; set; } = -1;         // out_features / out_channels / embedding_dim
        public long Count { get; set; } = -1;       // num_embeddings
        public bool Bias { get; set; } = true;
        // Composition: the composed model's declared input and inferred output.
        public Dim[]? SubInput { get; set; }
        public bool SubInputIsInteger { get; set; }
        public Dim[]? SubOutput { get; set; }
        public long SubParams { get; set; }
        // PositionalEmbedding uses Count for maxLength and In for the vector size; LSTM/GRU In for the input size and
        // Out for the hidden size.
        /// <summary>What only this kind has, as its descriptor's record (<see cref="LayerKind{TArguments}"/>); null when nothing.</summary>
        public KindArguments? Own { get; set; }
        /// <summary>Graph models: the layer written in <c>From</c> (<c>"input"</c>: the model input), or null for the previous one.</summary>
        public string? From { get; set; }
        /// <summary>A merge's sources as written (null entries for null strings), or null for a layer of one input.</summary>
        public string?[]? Sources { get; set; }
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
    /// PyTorch's shape rules (torch.nn docs, "Shape:" sections), one per layer kind in its descriptor
    /// (src/Shared/Layers). Inputs are batched: the first dimension is the batch, so a 2-D conv needs (B, C, H, W),
    /// never PyTorch's unbatched (C, H, W).
    /// </summary>
    internal static class ShapeRules
    {
        public static LayerShape Infer(LayerKind kind, LayerParams p, Dim[] input, bool inputIsInteger)
        {
            if (inputIsInteger && !kind.AcceptsIntegerInput)
                return Fail(ShapeErrorKind.FloatInputRequired, $"{kind} needs floating-point input but gets integer ids {ShapeText.Format(input)}; put an [Embedding] first, or declare InputType = DType.Float32");
            try
            {
                return kind.Infer(p, input, inputIsInteger);
            }
            catch (OverflowException)
            {
                return Fail(ShapeErrorKind.TooLarge, "the sizes are too large: a dimension or the parameter count overflows a 64-bit integer");
            }
        }

        /// <summary>A merge's rule (<see cref="LayerKind.InferMerge"/>) with the same overflow guard.</summary>
        public static LayerShape InferMerge(LayerKind kind, LayerParams p, IReadOnlyList<string> names, IReadOnlyList<Dim[]> inputs)
        {
            try
            {
                return kind.InferMerge(p, names, inputs);
            }
            catch (OverflowException)
            {
                return Fail(ShapeErrorKind.TooLarge, "the sizes are too large: a dimension overflows a 64-bit integer");
            }
        }

        private static LayerShape Fail(ShapeErrorKind kind, string message) =>
            new LayerShape { Error = new ShapeError(kind, message, null) };
    }
}
