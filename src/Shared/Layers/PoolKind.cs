namespace ModelDsl.Shapes
{
    /// <summary>[MaxPool2d] and [AvgPool2d]: windows over (B, C, H, W); the stride defaults to the kernel size.</summary>
    internal sealed class PoolKind : LayerKind<WindowArguments>
    {
        private readonly bool _max;

        public PoolKind(string name, bool max) : base(name) { _max = max; }

        /// <summary>A max pool keeps the int64 index of each output's maximum for backward besides the output.</summary>
        public override long ActivationBytes(KindArguments? own, long outputElements, int elementBytes) =>
            checked(outputElements * (elementBytes + (_max ? sizeof(long) : 0)));

        // The stride defaults to 0, "the kernel size", as PyTorch's stride=None.
        public override void Read(LayerParams p, ILayerArguments arguments) => p.Own = WindowArguments.Read(arguments, defaultStride: 0);

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            var window = Own(p);
            if (CheckWindow(window, 2, pool: true) is { } invalid) return invalid;
            if (x.Length != 4) return Rank("a 4-D (B, C, H, W) input", x);
            var outDims = (Dim[])x.Clone();
            for (int i = 2; i < 4; i++)
            {
                var w = Axis(window, i - 2, 2);
                var d = Window(x[i], i, w.Kernel, w.Stride <= 0 ? w.Kernel : w.Stride, w.Padding, w.Dilation);
                if (d.Error != null) return d;
                outDims[i] = d.Output[0];
            }
            return Ok(outDims, 0, -1);
        }

        public override Dim[] StandInInput(LayerParams p, Dim b, Dim c) => new[] { b, c, Dim.Sym("H"), Dim.Sym("W") };
        public override bool ChannelsPassThrough => true;

#if MODELDSL_GENERATOR
        public override string Construct(LayerSpec l)
        {
            var a = Own(l.Args).Resolved;
            if (_max)
                return a.IsSquare
                    ? $"{Nn}.MaxPool2d({N(a.Kernel)}, stride: {N(a.Stride)}, padding: {N(a.Padding)}, dilation: {N(a.Dilation)})"
                    : $"{Nn}.MaxPool2d({P(a.Kernel, a.KernelW)}, stride: {P(a.Stride, a.StrideW)}, padding: {P(a.Padding, a.PaddingW)}, dilation: {P(a.Dilation, a.DilationW)})";
            return a.IsSquare
                ? $"{Nn}.AvgPool2d({N(a.Kernel)}, stride: {N(a.Stride)}, padding: {N(a.Padding)})"
                : $"{Nn}.AvgPool2d({P(a.Kernel, a.KernelW)}, stride: {P(a.Stride, a.StrideW)}, padding: {P(a.Padding, a.PaddingW)})";
        }
#endif
    }

    /// <summary>[AdaptiveAvgPool2d]'s own arguments: the output's height and width.</summary>
    internal sealed record AdaptivePoolArguments(long Height, long Width) : KindArguments;

    /// <summary>[AdaptiveAvgPool2d]: (B, C, H, W) → (B, C, outH, outW).</summary>
    internal sealed class AdaptiveAvgPool2dKind : LayerKind<AdaptivePoolArguments>
    {
        public AdaptiveAvgPool2dKind() : base("AdaptiveAvgPool2d") { }

        public override void Read(LayerParams p, ILayerArguments arguments) =>
            p.Own = new AdaptivePoolArguments(arguments.Long("outputSize", "outputHeight") ?? -1, arguments.Long("outputSize", "outputWidth") ?? -1);

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            var size = Own(p);
            if (size.Height < 1) return NonPositive("outputHeight", size.Height);
            if (size.Width < 1) return NonPositive("outputWidth", size.Width);
            if (x.Length != 4) return Rank("a 4-D (B, C, H, W) input", x);
            var outDims = (Dim[])x.Clone();
            outDims[2] = Dim.Of(size.Height);
            outDims[3] = Dim.Of(size.Width);
            return Ok(outDims, 0, -1);
        }

        public override Dim[] StandInInput(LayerParams p, Dim b, Dim c) => new[] { b, c, Dim.Sym("H"), Dim.Sym("W") };
        public override bool ChannelsPassThrough => true;

#if MODELDSL_GENERATOR
        public override string Construct(LayerSpec l) => $"{Nn}.AdaptiveAvgPool2d(({N(Own(l.Args).Height)}, {N(Own(l.Args).Width)}))";
#endif
    }
}
