namespace ModelDsl.Shapes
{
    /// <summary>[Conv1d] and [Conv2d]: <c>torch.nn.Conv1d/Conv2d(in, out, kernel, stride, padding, dilation, groups, bias)</c>.</summary>
    internal sealed class ConvKind : LayerKind<WindowArguments>
    {
        // Autocast runs convolutions in bfloat16, but libtorch 2.10's bfloat16 convolution is wrong on the AVX-512 BF16 CPU
        // measured here (65-88% relative error against float32 on random 3x3 convolutions; PyTorch 1.13 on the same CPU
        // 0.3%; its bfloat16 Linear 0.3%): they stay float32, their input cast up (docs/training.md#mixed-precision-bf16).
        public override AutocastPolicy Autocast => AutocastPolicy.Float32;
        private readonly int _spatial;

        public ConvKind(string name, int spatial) : base(name) { _spatial = spatial; }

        public override void Read(LayerParams p, ILayerArguments arguments) => p.Own = WindowArguments.Read(arguments, defaultStride: 1);

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            if (p.Out < 1) return NonPositive("outChannels", p.Out);
            if (p.In != -1 && p.In < 1) return NonPositive("inChannels", p.In);
            var window = Own(p);
            if (CheckWindow(window, _spatial, pool: false) is { } invalid) return invalid;
            long groups = window.Groups;
            if (groups < 1) return NonPositive("Groups", groups);
            if (x.Length != _spatial + 2)
                return Rank(_spatial == 1 ? "a 3-D (B, C, L) input" : "a 4-D (B, C, H, W) input", x);
            var ch = Resolve(x[1], p.In, "inChannels", "in-channels", "dimension 1 (channels)");
            if (ch.Error != null) return ch;
            long inC = ch.ResolvedIn;
            if (inC % groups != 0 || p.Out % groups != 0)
                return Fail(ShapeErrorKind.InvalidArgument, $"Groups = {groups} must divide both in-channels ({inC}) and out-channels ({p.Out})", "Groups");
            var outDims = new Dim[x.Length];
            outDims[0] = x[0];
            outDims[1] = Dim.Of(p.Out);
            long kernelElems = 1;
            for (int i = 2; i < x.Length; i++)
            {
                var w = Axis(window, i - 2, _spatial);
                var d = Window(x[i], i, w.Kernel, w.Stride, w.Padding, w.Dilation);
                if (d.Error != null) return d;
                outDims[i] = d.Output[0];
                kernelElems = checked(kernelElems * w.Kernel);
            }
            long weights = checked(p.Out * (inC / groups) * kernelElems);
            return Ok(outDims, checked(weights + (p.Bias ? p.Out : 0)), inC);
        }

        public override string InputSizeName => "in-channels";
        public override string ExplicitExample(LayerParams p) => $"{Name}(inChannels, {p.Out}, {Own(p).Kernel})";
        public override Dim[] StandInInput(LayerParams p, Dim b, Dim c) =>
            _spatial == 1 ? new[] { b, c, Dim.Sym("L") } : new[] { b, c, Dim.Sym("H"), Dim.Sym("W") };

        public override int WeightRank => _spatial + 2;
        public override bool CanCut => _spatial == 2;

#if MODELDSL_GENERATOR
        public override string? ConstructComment(LayerSpec l) => "// (in, out, kernel, stride, padding, dilation, padding mode, groups, bias)";

        public override string Construct(LayerSpec l)
        {
            var a = l.Args;
            var w = Own(a).Resolved;
            if (_spatial == 2 && !w.IsSquare)
                // (height, width) pairs: TorchSharp's tuple overload, as PyTorch's Conv2d(..., (3, 5), ...).
                return $"{Nn}.Conv2d({N(a.In)}, {N(a.Out)}, {P(w.Kernel, w.KernelW)}, {P(w.Stride, w.StrideW)}, {P(w.Padding, w.PaddingW)}, {P(w.Dilation, w.DilationW)}, global::TorchSharp.PaddingModes.Zeros, {N(w.Groups)}, {B(a.Bias)})";
            // Positional on purpose: a named 'padding: 0' also converts to the Padding enum and is ambiguous.
            return $"{Nn}.{Name}({N(a.In)}, {N(a.Out)}, {N(w.Kernel)}, {N(w.Stride)}, {N(w.Padding)}, {N(w.Dilation)}, global::TorchSharp.PaddingModes.Zeros, {N(w.Groups)}, {B(a.Bias)})";
        }

        public override long WeightCount(LayerSpec l) => l.Parameters - (l.Args.Bias ? l.Args.Out : 0);
        public override IEnumerable<long> ParameterTensors(LayerSpec l) => WeightAndBias(l);

        // (out, in / groups, kernel height (or length), kernel width).
        public override long WeightSize(LayerArgs a, int dim) => dim switch
        {
            0 => a.Out,
            1 => a.In / System.Math.Max(1, Own(a).Groups),
            2 => Own(a).Kernel,
            _ => Own(a).KernelW,
        };
#endif
    }
}
