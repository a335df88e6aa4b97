using System;
#if MODELDSL_GENERATOR
using ModelDsl.Generators.Model;
#endif

namespace ModelDsl.Shapes
{
    /// <summary>[TransformerBlock(Heads, MlpRatio, Dropout, Causal, Repeat)]: the runtime's pre-LayerNorm GPT block on (B, T, C).</summary>
    internal sealed class TransformerBlockKind : LayerKind
    {
        public TransformerBlockKind() : base("TransformerBlock") { }

        public override string ModuleType => "ModelDsl.TransformerBlock";

        public override void Read(LayerParams p, ILayerArguments arguments)
        {
            p.Heads = arguments.Long("Heads") ?? 1;
            p.MlpRatio = arguments.Long("MlpRatio") ?? 4;
            p.Repeat = arguments.Long("Repeat") ?? 1;
            p.P = arguments.Double("Dropout") ?? 0.0;
            p.In = arguments.Long("EmbeddingDim") is { } c && c != -1 ? c : -1;
        }

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            if (p.Heads < 1) return NonPositive("Heads", p.Heads);
            if (p.MlpRatio < 1) return NonPositive("MlpRatio", p.MlpRatio);
            if (p.Repeat < 1) return NonPositive("Repeat", p.Repeat);
            if (!(p.P >= 0 && p.P < 1))
                return Fail(ShapeErrorKind.ProbabilityOutOfRange, $"Dropout is {Text(p.P)}; it must be in [0, 1)", "Dropout");
            if (p.In != -1 && p.In < 1) return NonPositive("EmbeddingDim", p.In);
            if (x.Length != 3) return NotSequence(x);
            var c = Resolve(x[2], p.In, "EmbeddingDim", "embedding size", "the last dimension (C)");
            if (c.Error != null) return c;
            long dim = c.ResolvedIn;
            if (dim % p.Heads != 0)
                return Fail(ShapeErrorKind.HeadsDoNotDivide, $"Heads = {p.Heads} does not divide the embedding size C = {dim}: each head takes C / Heads of it", "Heads");
            // Per block: ln_1 2C, in_proj 3C² + 3C, out_proj C² + C, ln_2 2C, linear1 rC² + rC, linear2 rC² + C.
            long perBlock = checked((4 + 2 * p.MlpRatio) * dim * dim + (9 + p.MlpRatio) * dim);
            return Ok((Dim[])x.Clone(), checked(p.Repeat * perBlock), dim);
        }

        public override string InputSizeName => "embedding size";
        public override string ExplicitExample(LayerParams p) => $"TransformerBlock(Heads = {p.Heads}, EmbeddingDim = size)";
        public override Dim[] StandInInput(LayerParams p, Dim b, Dim c) => new[] { b, Dim.Sym("T"), c };

        public override bool Quantizes => true;

#if MODELDSL_GENERATOR
        public override string? ConstructComment(LayerSpec l) =>
            $"// {l.Args.Repeat} x pre-LayerNorm block: x + attention(norm1(x)), then x + MLP(norm2(x)); {l.Args.Heads} heads of {l.Args.In / Math.Max(1, l.Args.Heads)}";

        public override string Construct(LayerSpec l)
        {
            var a = l.Args;
            return $"new global::ModelDsl.TransformerBlock({N(a.In)}, heads: {N(a.Heads)}, mlpRatio: {N(a.MlpRatio)}, dropout: {D(a.P)}, causal: {B(a.Causal)}, repeat: {N(a.Repeat)})";
        }
#endif
    }
}
