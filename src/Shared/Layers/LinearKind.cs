namespace ModelDsl.Shapes
{
    /// <summary>[Linear]: <c>torch.nn.Linear(in, out, bias)</c> over the last dimension.</summary>
    internal sealed class LinearKind : LayerKind
    {
        public override AutocastPolicy Autocast => AutocastPolicy.BFloat16;
        public LinearKind() : base("Linear") { }

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            if (p.Out < 1) return NonPositive("outFeatures", p.Out);
            if (p.In != -1 && p.In < 1) return NonPositive("inFeatures", p.In);
            if (x.Length < 1) return Rank("an input of at least 1 dimension", x);
            var last = Resolve(x[x.Length - 1], p.In, "inFeatures", "in-features", "the last dimension");
            if (last.Error != null) return last;
            var outDims = (Dim[])x.Clone();
            outDims[outDims.Length - 1] = Dim.Of(p.Out);
            return Ok(outDims, checked(last.ResolvedIn * p.Out + (p.Bias ? p.Out : 0)), last.ResolvedIn);
        }

        public override string InputSizeName => "in-features";
        public override string ExplicitExample(LayerParams p) => $"Linear(inFeatures, {p.Out})";
        public override Dim[] StandInInput(LayerParams p, Dim b, Dim c) => new[] { b, c };

        public override int WeightRank => 2;
        public override bool Quantizes => true;
        public override bool QuantizeReplacesModule => true;
        public override bool CanCut => true;

#if MODELDSL_GENERATOR
        public override string Construct(LayerSpec l) => $"{Nn}.Linear({N(l.Args.In)}, {N(l.Args.Out)}, hasBias: {B(l.Args.Bias)})";
        public override long WeightCount(LayerSpec l) => l.Parameters - (l.Args.Bias ? l.Args.Out : 0);
        public override IEnumerable<long> ParameterTensors(LayerSpec l) => WeightAndBias(l);
#endif
    }
}
