namespace ModelDsl.Shapes
{
    /// <summary>[LeakyReLU]'s own argument: PyTorch's <c>negative_slope</c>.</summary>
    internal sealed record LeakyReLUArguments(double NegativeSlope) : KindArguments;

    /// <summary>
    /// [LeakyReLU(negativeSlope = 0.01)]: <c>torch.nn.LeakyReLU</c>, elementwise, no parameters. The whole kind is this
    /// file, its attribute and its registry line: the recipe of README.md's "Adding a layer kind".
    /// </summary>
    internal sealed class LeakyReLUKind : LayerKind<LeakyReLUArguments>
    {
        public LeakyReLUKind() : base("LeakyReLU") { }

        public override void Read(LayerParams p, ILayerArguments arguments) =>
            p.Own = new LeakyReLUArguments(arguments.Double("negativeSlope") ?? 0.01);

        // Any slope is valid (PyTorch checks none), so the rule is the elementwise one: the shape is kept.
        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt) => Ok((Dim[])x.Clone(), 0, -1);

        public override bool ChannelsPassThrough => true;

#if MODELDSL_GENERATOR
        public override string Construct(LayerSpec l) => $"{Nn}.LeakyReLU({D(Own(l.Args).NegativeSlope)})";
#endif
    }
}
