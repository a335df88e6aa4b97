namespace ModelDsl.Shapes
{
    /// <summary>
    /// [Add(a, b)] and [Multiply(a, b)]: graph models' element-wise merges of two earlier layers' outputs, with
    /// PyTorch's broadcasting (shapes aligned from the right; a size 1 stretches to the other; a symbol equals only
    /// the same symbol). The module (<c>ModelDsl.Layers.Add</c>, <c>.Multiply</c>) holds no parameters; the
    /// generated forward calls <c>torch.add</c>/<c>torch.mul</c>.
    /// </summary>
    internal sealed class BroadcastMergeKind : LayerKind
    {
        public BroadcastMergeKind(string name, string function, string symbol) : base(name)
        {
            Function = function;
            Symbol = symbol;
        }

        /// <summary>The <c>torch</c> function the generated forward calls (<c>add</c>, <c>mul</c>).</summary>
        public string Function { get; }

        /// <summary>The operator, for comments (<c>+</c>, <c>*</c>).</summary>
        public string Symbol { get; }

        public override string ModuleType => "ModelDsl.Layers." + Name;

        public override bool IsMerge => true;

        public override bool AcceptsIntegerInput => true;

        public override void Read(LayerParams p, ILayerArguments arguments) =>
            p.Sources = new[] { arguments.String("first"), arguments.String("second") };

        public override string SourceArgument(int index) => index == 0 ? "first" : "second";

        /// <summary>A stand-in only (the input of a hand-written forward's merge is unknown): passes its one input on.</summary>
        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt) => Ok((Dim[])x.Clone(), 0, -1);

        public override LayerShape InferMerge(LayerParams p, IReadOnlyList<string> names, IReadOnlyList<Dim[]> inputs)
        {
            var result = inputs[0];
            for (int k = 1; k < inputs.Count; k++)
            {
                var other = inputs[k];
                int rank = System.Math.Max(result.Length, other.Length);
                var output = new Dim[rank];
                for (int i = 0; i < rank; i++)
                {
                    // Right-aligned: a missing leading dim counts as 1.
                    var a = i - (rank - result.Length) >= 0 ? result[i - (rank - result.Length)] : Dim.Of(1);
                    var b = i - (rank - other.Length) >= 0 ? other[i - (rank - other.Length)] : Dim.Of(1);
                    // A size unknown at compile time ('?', after a strided window over a symbolic size) is checked by
                    // libtorch at run time: it cannot be proven wrong here, and the known side is the better guess.
                    if (a.Equals(b) || IsOne(b) || b.IsUnknown) output[i] = a;
                    else if (IsOne(a) || a.IsUnknown) output[i] = b;
                    else
                        return Fail(ShapeErrorKind.MergeShapeMismatch,
                            $"{Name} cannot broadcast '{names[0]}' {ShapeText.Format(inputs[0])} with '{names[k]}' {ShapeText.Format(other)}: " +
                            $"dimension {i - rank} is {a} against {b} (PyTorch broadcasts sizes that are equal or 1, aligned from the right)", null);
                }
                result = output;
            }
            return Ok(result, 0, -1);
        }

        private static bool IsOne(Dim d) => d.IsConcrete && d.Size == 1;

#if MODELDSL_GENERATOR
        public override string Construct(LayerSpec l) => $"new global::{ModuleType}()";
#endif
    }

    /// <summary>[Concat]'s own argument: the dimension joined along, as written (negative counts from the end).</summary>
    internal sealed record ConcatArguments(long Dim) : KindArguments;

    /// <summary>
    /// [Concat(a, b, …, Dim = 1)]: two or more earlier layers' outputs joined along one dimension (<c>torch.cat</c>):
    /// the same rank, every other dimension equal. The module (<c>ModelDsl.Layers.Concat</c>) holds the dim.
    /// </summary>
    internal sealed class ConcatKind : LayerKind<ConcatArguments>
    {
        public ConcatKind() : base("Concat") { }

        public override string ModuleType => "ModelDsl.Layers.Concat";

        public override bool IsMerge => true;

        public override bool AcceptsIntegerInput => true;

        public override void Read(LayerParams p, ILayerArguments arguments)
        {
            p.Sources = arguments.StringArray("sources") ?? new string?[0];
            p.Own = new ConcatArguments(arguments.Long("Dim") ?? 1);
        }

        public override string SourceArgument(int index) => "[" + index.ToString(System.Globalization.CultureInfo.InvariantCulture) + "]";

        /// <summary>A stand-in only (the input of a hand-written forward's merge is unknown): passes its one input on.</summary>
        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt) => Ok((Dim[])x.Clone(), 0, -1);

        public override LayerShape InferMerge(LayerParams p, IReadOnlyList<string> names, IReadOnlyList<Dim[]> inputs)
        {
            long dim = Own(p).Dim;
            var first = inputs[0];
            int rank = first.Length;
            if (dim < -rank || dim >= rank)
                return Fail(ShapeErrorKind.ConcatMismatch, $"Dim = {dim} is out of range for '{names[0]}' {ShapeText.Format(first)} (expected [{-rank}, {rank - 1}])", "Dim");
            int axis = (int)(dim < 0 ? dim + rank : dim);
            var output = (Dim[])first.Clone();
            for (int k = 1; k < inputs.Count; k++)
            {
                var other = inputs[k];
                if (other.Length != rank)
                    return Fail(ShapeErrorKind.ConcatMismatch, $"Concat joins tensors of one rank, but '{names[0]}' is {rank}-D {ShapeText.Format(first)} and '{names[k]}' {other.Length}-D {ShapeText.Format(other)}", null);
                for (int i = 0; i < rank; i++)
                {
                    // An unknown size ('?') is left to libtorch's run-time check, as in Add/Multiply.
                    if (i == axis || first[i].Equals(other[i]) || first[i].IsUnknown || other[i].IsUnknown) continue;
                    return Fail(ShapeErrorKind.ConcatMismatch,
                        $"Concat along dim {dim} needs every other dimension equal, but '{names[0]}' {ShapeText.Format(first)} and '{names[k]}' {ShapeText.Format(other)} differ in dimension {i} ({first[i]} against {other[i]})", null);
                }
                output[axis] = output[axis].IsConcrete && other[axis].IsConcrete
                    ? Dim.Of(checked(output[axis].Size + other[axis].Size))
                    : Dim.Sym("?");
            }
            return Ok(output, 0, -1);
        }

#if MODELDSL_GENERATOR
        public override string Construct(LayerSpec l) => $"new global::{ModuleType}({N(Own(l.Args).Dim)})";
#endif
    }
}
