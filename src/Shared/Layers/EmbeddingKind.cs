namespace ModelDsl.Shapes
{
    /// <summary>[Embedding(num, dim)]: integer ids (*) → vectors (*, dim), a (num, dim) table.</summary>
    internal sealed class EmbeddingKind : LayerKind
    {
        public EmbeddingKind() : base("Embedding") { }

        public override bool AcceptsIntegerInput => true;

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
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

        public override bool StandInIsInteger(LayerParams p) => true;

        public override int WeightRank => 2;

#if MODELDSL_GENERATOR
        public override string Construct(LayerSpec l) => $"{Nn}.Embedding({N(l.Args.Count)}, {N(l.Args.Out)})";
        // The (num, dim) table.
        public override long WeightSize(LayerArgs a, int dim) => dim == 0 ? a.Count : a.Out;
#endif
    }

    /// <summary>[PositionalEmbedding(maxLength, embeddingDim)]: the runtime's learned position table added to (B, T, C).</summary>
    internal sealed class PositionalEmbeddingKind : LayerKind
    {
        public PositionalEmbeddingKind() : base("PositionalEmbedding") { }

        public override string ModuleType => "ModelDsl.PositionalEmbedding";

        public override void Read(LayerParams p, ILayerArguments arguments)
        {
            // (maxLength, embeddingDim): the vector size is the layer's input size, checked like Linear's.
            p.Count = arguments.Long("maxLength") ?? -1;
            p.In = arguments.Long("embeddingDim") ?? -1;
            p.Out = -1;
        }

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            if (p.Count < 1) return NonPositive("maxLength", p.Count);
            if (p.In != -1 && p.In < 1) return NonPositive("embeddingDim", p.In);
            if (x.Length != 3) return NotSequence(x);
            var c = Resolve(x[2], p.In, "embeddingDim", "embedding size", "the last dimension (C)");
            if (c.Error != null) return c;
            if (x[1].IsConcrete && x[1].Size > p.Count)
                return Fail(ShapeErrorKind.SequenceTooLong, $"the input has T = {x[1].Size} positions, but the positional table holds maxLength = {p.Count}; raise maxLength or shorten the input", "maxLength");
            return Ok((Dim[])x.Clone(), checked(p.Count * c.ResolvedIn), c.ResolvedIn);
        }

        public override string InputSizeName => "embedding size";
        public override string ExplicitExample(LayerParams p) => $"PositionalEmbedding({p.Count}, embeddingDim)";
        public override Dim[] StandInInput(LayerParams p, Dim b, Dim c) => new[] { b, Dim.Sym("T"), c };

#if MODELDSL_GENERATOR
        public override string Construct(LayerSpec l) => $"new global::ModelDsl.PositionalEmbedding({N(l.Args.Count)}, {N(l.Args.In)})";
#endif
    }
}
