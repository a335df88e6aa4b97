namespace ModelDsl.Shapes
{
    /// <summary>[Flatten]'s own arguments: the first and last dimension it merges.</summary>
    internal sealed record FlattenArguments(long StartDim, long EndDim) : KindArguments
    {
        /// <summary><c>Flatten(1, -1)</c>: (B, C, H, W) → (B, C·H·W), each channel a run of H·W features.</summary>
        public bool FlattensChannels => StartDim == 1 && EndDim == -1;
    }

    /// <summary>[Flatten(StartDim = 1, EndDim = -1)]: merges a run of dimensions into one.</summary>
    internal sealed class FlattenKind : LayerKind<FlattenArguments>
    {
        public FlattenKind() : base("Flatten") { }

        /// <summary>A flatten of a contiguous tensor is a view: it holds no new storage.</summary>
        public override long ActivationBytes(KindArguments? own, long outputElements, int elementBytes) => 0;

        public override void Read(LayerParams p, ILayerArguments arguments) =>
            p.Own = new FlattenArguments(arguments.Long("StartDim") ?? 1, arguments.Long("EndDim") ?? -1);

        public override bool AcceptsIntegerInput => true;

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            var f = Own(p);
            int rank = x.Length;
            long start = f.StartDim < 0 ? f.StartDim + rank : f.StartDim;
            long end = f.EndDim < 0 ? f.EndDim + rank : f.EndDim;
            if (start < 0 || start >= rank)
                return Fail(ShapeErrorKind.DimOutOfRange, $"StartDim = {f.StartDim} is out of range for a {rank}-D input {ShapeText.Format(x)}", "StartDim");
            if (end < 0 || end >= rank)
                return Fail(ShapeErrorKind.DimOutOfRange, $"EndDim = {f.EndDim} is out of range for a {rank}-D input {ShapeText.Format(x)}", "EndDim");
            if (start > end)
                return Fail(ShapeErrorKind.DimOutOfRange, $"StartDim ({f.StartDim}) comes after EndDim ({f.EndDim}) for a {rank}-D input", "StartDim");
            var outDims = new List<Dim>();
            for (int i = 0; i < start; i++) outDims.Add(x[i]);
            outDims.Add(Product(x, (int)start, (int)end));
            for (long i = end + 1; i < rank; i++) outDims.Add(x[i]);
            var flat = Ok(outDims.ToArray(), 0, -1);
            flat.OutputIsInteger = isInt;
            return flat;
        }

        public override Dim[] StandInInput(LayerParams p, Dim b, Dim c) => Repeated(b, 8);

#if MODELDSL_GENERATOR
        public override string Construct(LayerSpec l) => $"{Nn}.Flatten({N(Own(l.Args).StartDim)}, {N(Own(l.Args).EndDim)})";
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
