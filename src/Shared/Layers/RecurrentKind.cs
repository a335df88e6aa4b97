namespace ModelDsl.Shapes
{
    /// <summary>An LSTM's or GRU's own arguments (PyTorch's num_layers, bidirectional, batch_first).</summary>
    internal sealed record RecurrentArguments(long NumLayers, bool Bidirectional, bool BatchFirst) : KindArguments;

    /// <summary>
    /// [LSTM] and [GRU]: <c>torch.nn.LSTM/GRU(input, hidden, num_layers, batch_first, bidirectional)</c> on (B, T, C),
    /// run from zero states through the runtime's RecurrentLayer slot, which passes the output sequence on.
    /// </summary>
    internal sealed class RecurrentKind : LayerKind<RecurrentArguments>
    {
        private readonly long _gates;

        public RecurrentKind(string name, long gates) : base(name) { _gates = gates; }

        public override bool Recurrent => true;

        /// <summary>Float32 under bf16 mixed precision: its weights stay float32, so a bfloat16 input is cast up first.</summary>
        public override AutocastPolicy Autocast => AutocastPolicy.Float32;

        public override void Read(LayerParams p, ILayerArguments arguments)
        {
            p.In = arguments.Long("inputSize") ?? -1;
            p.Out = arguments.Long("hiddenSize") ?? -1;
            p.Own = new RecurrentArguments(arguments.Long("NumLayers") ?? 1, arguments.Bool("Bidirectional") ?? false, arguments.Bool("BatchFirst") ?? true);
        }

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            var r = Own(p);
            if (p.Out < 1) return NonPositive("hiddenSize", p.Out);
            if (p.In != -1 && p.In < 1) return NonPositive("inputSize", p.In);
            if (r.NumLayers < 1) return NonPositive("NumLayers", r.NumLayers);
            if (x.Length != 3) return NotSequence(x);
            var c = Resolve(x[2], p.In, "inputSize", "input size", "the last dimension (C)");
            if (c.Error != null) return c;
            // nn.LSTM/nn.GRU: per layer and direction weight_ih (G·H, in), weight_hh (G·H, H) and two biases of
            // G·H, with G = 4 gates (LSTM) or 3 (GRU); layers after the first take the H·directions outputs.
            long h = p.Out, directions = r.Bidirectional ? 2 : 1;
            long first = checked(_gates * h * (c.ResolvedIn + h + 2));
            long later = checked(_gates * h * (directions * h + h + 2));
            long parameters = checked(directions * (first + (r.NumLayers - 1) * later));
            return Ok(new[] { x[0], x[1], Dim.Of(checked(directions * h)) }, parameters, c.ResolvedIn);
        }

        public override string InputSizeName => "input size";
        public override string ExplicitExample(LayerParams p) => $"{Name}(inputSize, {p.Out})";
        public override Dim[] StandInInput(LayerParams p, Dim b, Dim c) => new[] { b, Dim.Sym("T"), c };

        public override bool Quantizes => true;

        /// <summary>
        /// An estimate, not measured: per layer and time step each direction keeps its G gates and its two states of H,
        /// (G + 2) times the output per layer.
        /// </summary>
        public override long ActivationBytes(KindArguments? own, long outputElements, int elementBytes) =>
            checked((own is RecurrentArguments r ? r.NumLayers : 1) * (_gates + 2) * outputElements * elementBytes);
        public override bool QuantizeReplacesModule => true;

#if MODELDSL_GENERATOR
        public override string? ConstructComment(LayerSpec l) =>
            $"// nn.{Name}({l.Args.In}, {l.Args.Out}, num_layers={Own(l.Args).NumLayers}, batch_first={(Own(l.Args).BatchFirst ? "True" : "False")}, bidirectional={(Own(l.Args).Bidirectional ? "True" : "False")}) from zero states; forward passes its output sequence on";

        public override string Construct(LayerSpec l)
        {
            var r = Own(l.Args);
            return $"global::ModelDsl.RecurrentLayer.{Name}({N(l.Args.In)}, {N(l.Args.Out)}, numLayers: {N(r.NumLayers)}, bidirectional: {B(r.Bidirectional)}, batchFirst: {B(r.BatchFirst)})";
        }
#endif
    }
}
