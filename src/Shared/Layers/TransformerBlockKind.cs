namespace ModelDsl.Shapes
{
    /// <summary>A Transformer block's own arguments.</summary>
    internal sealed record TransformerArguments(long Heads, long MlpRatio, long Repeat, double Dropout, bool Causal) : KindArguments;

    /// <summary>[TransformerBlock(Heads, MlpRatio, Dropout, Causal, Repeat)]: the runtime's pre-LayerNorm GPT block on (B, T, C).</summary>
    internal sealed class TransformerBlockKind : LayerKind<TransformerArguments>
    {
        public override AutocastPolicy Autocast => AutocastPolicy.BFloat16;
        public TransformerBlockKind() : base("TransformerBlock") { }

        public override string ModuleType => "ModelDsl.TransformerBlock";

        public override void Read(LayerParams p, ILayerArguments arguments)
        {
            p.Own = new TransformerArguments(arguments.Long("Heads") ?? 1, arguments.Long("MlpRatio") ?? 4, arguments.Long("Repeat") ?? 1,
                arguments.Double("Dropout") ?? 0.0, arguments.Bool("Causal") ?? true);
            p.In = arguments.Long("EmbeddingDim") is { } c && c != -1 ? c : -1;
        }

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            var t = Own(p);
            if (t.Heads < 1) return NonPositive("Heads", t.Heads);
            if (t.MlpRatio < 1) return NonPositive("MlpRatio", t.MlpRatio);
            if (t.Repeat < 1) return NonPositive("Repeat", t.Repeat);
            if (!(t.Dropout >= 0 && t.Dropout < 1))
                return Fail(ShapeErrorKind.ProbabilityOutOfRange, $"Dropout is {Text(t.Dropout)}; it must be in [0, 1)", "Dropout");
            if (p.In != -1 && p.In < 1) return NonPositive("EmbeddingDim", p.In);
            if (x.Length != 3) return NotSequence(x);
            var c = Resolve(x[2], p.In, "EmbeddingDim", "embedding size", "the last dimension (C)");
            if (c.Error != null) return c;
            long dim = c.ResolvedIn;
            if (dim % t.Heads != 0)
                return Fail(ShapeErrorKind.HeadsDoNotDivide, $"Heads = {t.Heads} does not divide the embedding size C = {dim}: each head takes C / Heads of it", "Heads");
            // Per block: ln_1 2C, in_proj 3C² + 3C, out_proj C² + C, ln_2 2C, linear1 rC² + rC, linear2 rC² + C.
            long perBlock = checked((4 + 2 * t.MlpRatio) * dim * dim + (9 + t.MlpRatio) * dim);
            return Ok((Dim[])x.Clone(), checked(t.Repeat * perBlock), dim);
        }

        public override string InputSizeName => "embedding size";
        public override string ExplicitExample(LayerParams p) => $"TransformerBlock(Heads = {Own(p).Heads}, EmbeddingDim = size)";
        public override Dim[] StandInInput(LayerParams p, Dim b, Dim c) => new[] { b, Dim.Sym("T"), c };

        public override bool Quantizes => true;

        /// <summary>
        /// An estimate per block, in (B, T, C) elements: norm1 1, in_proj 3, attention output 1, out_proj 1, residual 1,
        /// norm2 1, linear1 r, GELU r, linear2 1, residual 1 — (10 + 2r)·C per position; the attention weights are not
        /// counted (libtorch's CPU scaled_dot_product_attention keeps per-row statistics, not the T×T matrix). Not
        /// measured; docs/memory.md says so.
        /// </summary>
        public override long ActivationBytes(KindArguments? own, long outputElements, int elementBytes) =>
            own is TransformerArguments t ? checked(t.Repeat * (10 + 2 * t.MlpRatio) * outputElements * elementBytes) : base.ActivationBytes(own, outputElements, elementBytes);

        /// <summary>
        /// Under bfloat16 (BFloat16Training's per-layer autocast): the two norms run in float32 (4 bytes), the two residual
        /// sums keep the stream's dtype (a float32 stream plus a bfloat16 branch is float32), each norm's output is cast to
        /// bfloat16 for the Linear after it (one more tensor each), and the rest — in_proj 3, attention 1, out_proj 1,
        /// linear1 r, GELU r, linear2 1 — is bfloat16: 2·4 + 2·stream + (8 + 2r)·2 bytes per (B, T, C) element.
        /// </summary>
        public override long MixedActivationBytes(KindArguments? own, long outputElements, int inputBytes) =>
            own is TransformerArguments t ? checked(t.Repeat * (2 * 4 + 2 * inputBytes + (8 + 2 * t.MlpRatio) * 2) * outputElements) : base.MixedActivationBytes(own, outputElements, inputBytes);

        /// <summary>The residual stream leaves in the dtype it came in (the sums with the bfloat16 branches keep it).</summary>
        public override int MixedOutputBytes(int inputBytes) => inputBytes;

#if MODELDSL_GENERATOR
        public override string? ConstructComment(LayerSpec l) =>
            $"// {Own(l.Args).Repeat} x pre-LayerNorm block: x + attention(norm1(x)), then x + MLP(norm2(x)); {Own(l.Args).Heads} heads of {l.Args.In / Math.Max(1, Own(l.Args).Heads)}";

        public override IEnumerable<long> ParameterTensors(LayerSpec l)
        {
            // TransformerLayer's registration order, per block: norm1 w, b; in_proj w, b; out_proj w, b; norm2 w, b; linear1 w, b; linear2 w, b.
            var t = Own(l.Args);
            long c = l.Args.In, r = t.MlpRatio;
            for (long block = 0; block < t.Repeat; block++)
                foreach (long n in new[] { c, c, 3 * c * c, 3 * c, c * c, c, c, c, r * c * c, r * c, r * c * c, c })
                    yield return n;
        }

        public override string Construct(LayerSpec l)
        {
            var t = Own(l.Args);
            return $"new global::ModelDsl.TransformerBlock({N(l.Args.In)}, heads: {N(t.Heads)}, mlpRatio: {N(t.MlpRatio)}, dropout: {D(t.Dropout)}, causal: {B(t.Causal)}, repeat: {N(t.Repeat)})";
        }
#endif
    }
}
