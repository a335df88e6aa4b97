#if MODELDSL_GENERATOR
using ModelDsl.Generators.Model;
#endif

namespace ModelDsl.Shapes
{
    /// <summary>[ReLU], [GELU], [SiLU], [Tanh], [Sigmoid]: elementwise, no parameters, <c>torch.nn.X()</c>.</summary>
    internal sealed class ActivationKind : LayerKind
    {
        public ActivationKind(string name) : base(name) { }

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt) => Ok((Dim[])x.Clone(), 0, -1);

        public override bool ChannelsPassThrough => true;
    }

    /// <summary>[Identity]: passes anything on, integer ids included.</summary>
    internal sealed class IdentityKind : LayerKind
    {
        public IdentityKind() : base("Identity") { }

        public override bool AcceptsIntegerInput => true;

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            var id = Ok((Dim[])x.Clone(), 0, -1);
            id.OutputIsInteger = isInt;
            return id;
        }

        public override bool ChannelsPassThrough => true;
    }

    /// <summary>[Dropout(p)]: elementwise in training, identity in evaluation.</summary>
    internal sealed class DropoutKind : LayerKind
    {
        public DropoutKind() : base("Dropout") { }

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            if (!(p.P >= 0 && p.P < 1))
                return Fail(ShapeErrorKind.ProbabilityOutOfRange, $"dropout probability is {Text(p.P)}; it must be in [0, 1)", "p");
            return Ok((Dim[])x.Clone(), 0, -1);
        }

        public override bool ChannelsPassThrough => true;

#if MODELDSL_GENERATOR
        public override string Construct(LayerSpec l) => $"{Nn}.Dropout({D(l.Args.P)})";
#endif
    }

    /// <summary>[Softmax(dim)] and [LogSoftmax(dim)].</summary>
    internal sealed class SoftmaxKind : LayerKind
    {
        public SoftmaxKind(string name) : base(name) { }

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            if (p.Dim < -x.Length || p.Dim >= x.Length)
                return Fail(ShapeErrorKind.DimOutOfRange, $"dim = {p.Dim} is out of range for a {x.Length}-D input {ShapeText.Format(x)} (expected [{-x.Length}, {x.Length - 1}])", "dim");
            return Ok((Dim[])x.Clone(), 0, -1);
        }

        public override Dim[] StandInInput(LayerParams p, Dim b, Dim c) => Repeat(b, 8);

#if MODELDSL_GENERATOR
        public override string Construct(LayerSpec l) => $"{Nn}.{Name}({N(l.Args.Dim)})";
#endif

        internal static Dim[] Repeat(Dim d, int count)
        {
            var dims = new Dim[count];
            for (int i = 0; i < count; i++) dims[i] = d;
            return dims;
        }
    }
}
