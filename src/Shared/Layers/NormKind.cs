namespace ModelDsl.Shapes
{
    /// <summary>A normalisation's own arguments: <c>eps</c>, and BatchNorm's running-statistics <c>momentum</c>.</summary>
    internal sealed record NormArguments(double Eps, double Momentum) : KindArguments
    {
        public static NormArguments Read(ILayerArguments arguments) =>
            new(arguments.Double("Eps") ?? 1e-5, arguments.Double("Momentum") ?? 0.1);
    }

    /// <summary>
    /// What the normalisations share: their arguments, float32 under autocast, and a weight and a bias of the normalised
    /// size (the input's features, which Out, unset for a norm, does not hold).
    /// </summary>
    internal abstract class NormKind : LayerKind<NormArguments>
    {
        protected NormKind(string name) : base(name) { }

        public override AutocastPolicy Autocast => AutocastPolicy.Float32;

        public override void Read(LayerParams p, ILayerArguments arguments) => p.Own = NormArguments.Read(arguments);

        public override int WeightRank => 1;

#if MODELDSL_GENERATOR
        // The weight is (C,): its one dim holds the input's features, not an output size (Out is unset for a norm).
        public override long WeightSize(LayerArgs a, int dim) => a.In;
        public override long WeightCount(LayerSpec l) => l.Parameters / 2;
        public override IEnumerable<long> ParameterTensors(LayerSpec l) => new[] { l.Parameters / 2, l.Parameters / 2 };
#endif
    }

    /// <summary>[BatchNorm1d] and [BatchNorm2d]: per-channel (dimension 1) weight and bias, plus running statistics.</summary>
    internal sealed class BatchNormKind : NormKind
    {
        private readonly int _spatial;

        public BatchNormKind(string name, int spatial) : base(name) { _spatial = spatial; }

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            if (p.In != -1 && p.In < 1) return NonPositive("numFeatures", p.In);
            bool ok = _spatial == 1 ? (x.Length == 2 || x.Length == 3) : x.Length == 4;
            if (!ok) return Rank(_spatial == 1 ? "a 2-D (B, C) or 3-D (B, C, L) input" : "a 4-D (B, C, H, W) input", x);
            var c = Resolve(x[1], p.In, "numFeatures", "num-features", "dimension 1 (channels)");
            if (c.Error != null) return c;
            return Ok((Dim[])x.Clone(), checked(2 * c.ResolvedIn), c.ResolvedIn);
        }

        public override string InputSizeName => "number of features";
        public override Dim[] StandInInput(LayerParams p, Dim b, Dim c) =>
            _spatial == 1 ? new[] { b, c } : new[] { b, c, Dim.Sym("H"), Dim.Sym("W") };

#if MODELDSL_GENERATOR
        public override string Construct(LayerSpec l) => $"{Nn}.{Name}({N(l.Args.In)}, eps: {D(Own(l.Args).Eps)}, momentum: {D(Own(l.Args).Momentum)})";
#endif
    }

    /// <summary>[LayerNorm]: normalises the last dimension, with a weight and bias of its size.</summary>
    internal sealed class LayerNormKind : NormKind
    {
        public LayerNormKind() : base("LayerNorm") { }

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            if (p.In != -1 && p.In < 1) return NonPositive("normalizedShape", p.In);
            if (x.Length < 1) return Rank("an input of at least 1 dimension", x);
            var n = Resolve(x[x.Length - 1], p.In, "normalizedShape", "normalized shape", "the last dimension");
            if (n.Error != null) return n;
            return Ok((Dim[])x.Clone(), checked(2 * n.ResolvedIn), n.ResolvedIn);
        }

        public override string InputSizeName => "normalized shape";
        public override string ExplicitExample(LayerParams p) => "LayerNorm(size)";
        public override Dim[] StandInInput(LayerParams p, Dim b, Dim c) => new[] { b, c };

#if MODELDSL_GENERATOR
        public override string Construct(LayerSpec l) => $"{Nn}.LayerNorm({N(l.Args.In)}, eps: {D(Own(l.Args).Eps)})";
#endif
    }
}
