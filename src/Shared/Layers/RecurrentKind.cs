#if MODELDSL_GENERATOR
using ModelDsl.Generators.Model;
#endif

namespace ModelDsl.Shapes
{
    /// <summary>
    /// [LSTM] and [GRU]: <c>torch.nn.LSTM/GRU(input, hidden, num_layers, batch_first, bidirectional)</c> on (B, T, C),
    /// run from zero states through the runtime's RecurrentLayer slot, which passes the output sequence on.
    /// </summary>
    internal sealed class RecurrentKind : LayerKind
    {
        private readonly long _gates;

        public RecurrentKind(string name, long gates) : base(name) { _gates = gates; }

        public override bool Recurrent => true;

        public override void Read(LayerParams p, ILayerArguments arguments)
        {
            p.In = arguments.Long("inputSize") ?? -1;
            p.Out = arguments.Long("hiddenSize") ?? -1;
            p.NumLayers = arguments.Long("NumLayers") ?? 1;
            p.Bidirectional = arguments.Bool("Bidirectional") ?? false;
            p.BatchFirst = arguments.Bool("BatchFirst") ?? true;
        }

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            if (p.Out < 1) return NonPositive("hiddenSize", p.Out);
            if (p.In != -1 && p.In < 1) return NonPositive("inputSize", p.In);
            if (p.NumLayers < 1) return NonPositive("NumLayers", p.NumLayers);
            if (x.Length != 3) return NotSequence(x);
            var c = Resolve(x[2], p.In, "inputSize", "input size", "the last dimension (C)");
            if (c.Error != null) return c;
            // nn.LSTM/nn.GRU: per layer and direction weight_ih (G·H, in), weight_hh (G·H, H) and two biases of
            // G·H, with G = 4 gates (LSTM) or 3 (GRU); layers after the first take the H·directions outputs.
            long h = p.Out, directions = p.Bidirectional ? 2 : 1;
            long first = checked(_gates * h * (c.ResolvedIn + h + 2));
            long later = checked(_gates * h * (directions * h + h + 2));
            long parameters = checked(directions * (first + (p.NumLayers - 1) * later));
            return Ok(new[] { x[0], x[1], Dim.Of(checked(directions * h)) }, parameters, c.ResolvedIn);
        }

        public override string InputSizeName => "input size";
        public override string ExplicitExample(LayerParams p) => $"{Name}(inputSize, {p.Out})";
        public override Dim[] StandInInput(LayerParams p, Dim b, Dim c) => new[] { b, Dim.Sym("T"), c };

        public override bool Quantizes => true;
        public override bool QuantizeReplacesModule => true;

#if MODELDSL_GENERATOR
        public override string? ConstructComment(LayerSpec l) =>
            $"// nn.{Name}({l.Args.In}, {l.Args.Out}, num_layers={l.Args.NumLayers}, batch_first={(l.Args.BatchFirst ? "True" : "False")}, bidirectional={(l.Args.Bidirectional ? "True" : "False")}) from zero states; forward passes its output sequence on";

        public override string Construct(LayerSpec l)
        {
            var a = l.Args;
            return $"global::ModelDsl.RecurrentLayer.{Name}({N(a.In)}, {N(a.Out)}, numLayers: {N(a.NumLayers)}, bidirectional: {B(a.Bidirectional)}, batchFirst: {B(a.BatchFirst)})";
        }
#endif
    }
}
