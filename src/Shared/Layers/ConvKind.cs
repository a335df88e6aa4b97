#if MODELDSL_GENERATOR
using ModelDsl.Generators.Model;
#endif

namespace ModelDsl.Shapes
{
    /// <summary>[Conv1d] and [Conv2d]: <c>torch.nn.Conv1d/Conv2d(in, out, kernel, stride, padding, dilation, groups, bias)</c>.</summary>
    internal sealed class ConvKind : LayerKind
    {
        private readonly int _spatial;

        public ConvKind(string name, int spatial) : base(name) { _spatial = spatial; }

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            if (p.Out < 1) return NonPositive("outChannels", p.Out);
            if (p.In != -1 && p.In < 1) return NonPositive("inChannels", p.In);
            if (KernelValues(p, _spatial) is { } arity) return arity;
            for (int axis = 0; axis < _spatial; axis++)
            {
                var w = Axis(p, axis, _spatial);
                if (w.Kernel < 1) return NonPositive("kernelSize", w.Kernel);
                if (w.Stride < 1) return NonPositive(w.Name("Stride"), w.Stride);
                if (w.Dilation < 1) return NonPositive(w.Name("Dilation"), w.Dilation);
                if (w.Padding < 0) return NonNegative(w.Name("Padding"), w.Padding);
            }
            if (p.Groups < 1) return NonPositive("Groups", p.Groups);
            if (x.Length != _spatial + 2)
                return Rank(_spatial == 1 ? "a 3-D (B, C, L) input" : "a 4-D (B, C, H, W) input", x);
            var ch = Resolve(x[1], p.In, "inChannels", "in-channels", "dimension 1 (channels)");
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
                var w = Axis(p, i - 2, _spatial);
                var d = Window(x[i], i, w.Kernel, w.Stride, w.Padding, w.Dilation);
                if (d.Error != null) return d;
                outDims[i] = d.Output[0];
                kernelElems = checked(kernelElems * w.Kernel);
            }
            long weights = checked(p.Out * (inC / p.Groups) * kernelElems);
            return Ok(outDims, checked(weights + (p.Bias ? p.Out : 0)), inC);
        }

        public override string InputSizeName => "in-channels";
        public override string ExplicitExample(LayerParams p) => $"{Name}(inChannels, {p.Out}, {p.Kernel})";
        public override Dim[] StandInInput(LayerParams p, Dim b, Dim c) =>
            _spatial == 1 ? new[] { b, c, Dim.Sym("L") } : new[] { b, c, Dim.Sym("H"), Dim.Sym("W") };

        public override int WeightRank => _spatial + 2;
        public override bool CanCut => _spatial == 2;

#if MODELDSL_GENERATOR
        public override string? ConstructComment(LayerSpec l) => "// (in, out, kernel, stride, padding, dilation, padding mode, groups, bias)";

        public override string Construct(LayerSpec l)
        {
            var a = l.Args;
            if (_spatial == 2 && !a.IsSquare)
                // (height, width) pairs: TorchSharp's tuple overload, as PyTorch's Conv2d(..., (3, 5), ...).
                return $"{Nn}.Conv2d({N(a.In)}, {N(a.Out)}, {P(a.Kernel, a.KernelW)}, {P(a.Stride, a.StrideW)}, {P(a.Padding, a.PaddingW)}, {P(a.Dilation, a.DilationW)}, global::TorchSharp.PaddingModes.Zeros, {N(a.Groups)}, {B(a.Bias)})";
            // Positional on purpose: a named 'padding: 0' also converts to the Padding enum and is ambiguous.
            return $"{Nn}.{Name}({N(a.In)}, {N(a.Out)}, {N(a.Kernel)}, {N(a.Stride)}, {N(a.Padding)}, {N(a.Dilation)}, global::TorchSharp.PaddingModes.Zeros, {N(a.Groups)}, {B(a.Bias)})";
        }

        public override long WeightCount(LayerSpec l) => l.Parameters - (l.Args.Bias ? l.Args.Out : 0);
#endif
    }
}
