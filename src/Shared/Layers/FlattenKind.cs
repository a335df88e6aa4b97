using System.Collections.Generic;
#if MODELDSL_GENERATOR
using ModelDsl.Generators.Model;
#endif

namespace ModelDsl.Shapes
{
    /// <summary>[Flatten(StartDim = 1, EndDim = -1)]: merges a run of dimensions into one.</summary>
    internal sealed class FlattenKind : LayerKind
    {
        public FlattenKind() : base("Flatten") { }

        public override void Read(LayerParams p, ILayerArguments arguments) => p.Dim = arguments.Long("StartDim") ?? 1;

        public override bool AcceptsIntegerInput => true;

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            int rank = x.Length;
            long start = p.Dim < 0 ? p.Dim + rank : p.Dim;
            long end = p.EndDim < 0 ? p.EndDim + rank : p.EndDim;
            if (start < 0 || start >= rank)
                return Fail(ShapeErrorKind.DimOutOfRange, $"StartDim = {p.Dim} is out of range for a {rank}-D input {ShapeText.Format(x)}", "StartDim");
            if (end < 0 || end >= rank)
                return Fail(ShapeErrorKind.DimOutOfRange, $"EndDim = {p.EndDim} is out of range for a {rank}-D input {ShapeText.Format(x)}", "EndDim");
            if (start > end)
                return Fail(ShapeErrorKind.DimOutOfRange, $"StartDim ({p.Dim}) comes after EndDim ({p.EndDim}) for a {rank}-D input", "StartDim");
            var outDims = new List<Dim>();
            for (int i = 0; i < start; i++) outDims.Add(x[i]);
            outDims.Add(Product(x, (int)start, (int)end));
            for (long i = end + 1; i < rank; i++) outDims.Add(x[i]);
            var flat = Ok(outDims.ToArray(), 0, -1);
            flat.OutputIsInteger = isInt;
            return flat;
        }

        public override Dim[] StandInInput(LayerParams p, Dim b, Dim c) => SoftmaxKind.Repeat(b, 8);

#if MODELDSL_GENERATOR
        public override string Construct(LayerSpec l) => $"{Nn}.Flatten({N(l.Args.Dim)}, {N(l.Args.EndDim)})";
#endif

        private static Dim Product(Dim[] x, int start, int end)
        {
            long size = 1;
            var symbols = new List<string>();
            for (int i = start; i <= end; i++)
            {
                if (x[i].IsConcrete) size = checked(size * x[i].Size);
                else symbols.Add(x[i].Symbol!);
            }
            if (symbols.Count == 0) return Dim.Of(size);
            if (size != 1) symbols.Add(size.ToString(System.Globalization.CultureInfo.InvariantCulture));
            return Dim.Sym(string.Join("*", symbols));
        }
    }
}
