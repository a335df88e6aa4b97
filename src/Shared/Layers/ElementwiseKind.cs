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

        /// <summary>The identity returns its input: nothing new is kept.</summary>
        public override long ActivationBytes(KindArguments? own, long outputElements, int elementBytes) => 0;

        public override bool AcceptsIntegerInput => true;

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            var id = Ok((Dim[])x.Clone(), 0, -1);
            id.OutputIsInteger = isInt;
            return id;
        }

        public override bool ChannelsPassThrough => true;
    }

    /// <summary>[Dropout]'s own argument: the probability of zeroing an element.</summary>
    internal sealed record DropoutArguments(double P) : KindArguments;

    /// <summary>[Dropout(p)]: elementwise in training, identity in evaluation.</summary>
    internal sealed class DropoutKind : LayerKind<DropoutArguments>
    {
        public DropoutKind() : base("Dropout") { }

        /// <summary>libtorch's CPU dropout multiplies by a mask of the input's size and dtype: the output and the mask.</summary>
        public override long ActivationBytes(KindArguments? own, long outputElements, int elementBytes) =>
            own is DropoutArguments { P: 0 } ? 0 : checked(2 * outputElements * elementBytes);

        public override void Read(LayerParams p, ILayerArguments arguments) => p.Own = new DropoutArguments(arguments.Double("p") ?? 0.5);

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            double probability = Own(p).P;
            if (!(probability >= 0 && probability < 1))
                return Fail(ShapeErrorKind.ProbabilityOutOfRange, $"dropout probability is {Text(probability)}; it must be in [0, 1)", "p");
            return Ok((Dim[])x.Clone(), 0, -1);
        }

        public override bool ChannelsPassThrough => true;

#if MODELDSL_GENERATOR
        public override string Construct(LayerSpec l) => $"{Nn}.Dropout({D(Own(l.Args).P)})";
#endif
    }

    /// <summary>[Softmax]'s and [LogSoftmax]'s own argument: the dimension they normalise along.</summary>
    internal sealed record SoftmaxArguments(long Dim) : KindArguments;

    /// <summary>[Softmax(dim)] and [LogSoftmax(dim)].</summary>
    internal sealed class SoftmaxKind : LayerKind<SoftmaxArguments>
    {
        public override AutocastPolicy Autocast => AutocastPolicy.Float32;
        public SoftmaxKind(string name) : base(name) { }

        public override void Read(LayerParams p, ILayerArguments arguments) => p.Own = new SoftmaxArguments(arguments.Long("dim") ?? 0);

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            long dim = Own(p).Dim;
            if (dim < -x.Length || dim >= x.Length)
                return Fail(ShapeErrorKind.DimOutOfRange, $"dim = {dim} is out of range for a {x.Length}-D input {ShapeText.Format(x)} (expected [{-x.Length}, {x.Length - 1}])", "dim");
            return Ok((Dim[])x.Clone(), 0, -1);
        }

        public override Dim[] StandInInput(LayerParams p, Dim b, Dim c) => Repeated(b, 8);

#if MODELDSL_GENERATOR
        public override string Construct(LayerSpec l) => $"{Nn}.{Name}({N(Own(l.Args).Dim)})";
#endif
    }
}
