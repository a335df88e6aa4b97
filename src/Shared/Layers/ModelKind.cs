namespace ModelDsl.Shapes
{
    /// <summary>[Block]'s own argument on a composed model: how many independent copies run in sequence.</summary>
    internal sealed record BlockArguments(long Repeat) : KindArguments;

    /// <summary>A composed [Model] class used as a layer: its declared input binds to what the caller passes.</summary>
    internal sealed class ModelKind : LayerKind
    {
        public ModelKind() : base("Model") { }

        /// <summary>Any [Model] class (the parser checks it has the attribute); no module type maps back to this kind.</summary>
        public override string ModuleType => "(a [Model] class)";

        /// <summary>Checked against the composed model's own input type instead.</summary>
        public override bool AcceptsIntegerInput => true;

        public override LayerShape Infer(LayerParams p, Dim[] x, bool isInt)
        {
            var expected = p.SubInput ?? Array.Empty<Dim>();
            var expectedText = ShapeText.Format(expected);
            if (p.SubInputIsInteger != isInt)
                return Fail(ShapeErrorKind.SubmodelInputMismatch, $"the composed model takes {(p.SubInputIsInteger ? "integer ids" : "floating-point input")} {expectedText} but gets {(isInt ? "integer ids" : "floating-point input")} {ShapeText.Format(x)}", null);
            if (expected.Length != x.Length)
                return Fail(ShapeErrorKind.SubmodelInputMismatch, $"the composed model takes a {expected.Length}-D input {expectedText} but gets {x.Length}-D {ShapeText.Format(x)}", null);

            // Each symbol of the composed model binds to what the caller passes (B to B, T to 16, ...), consistently.
            var bindings = new Dictionary<string, Dim>(StringComparer.Ordinal);
            for (int i = 0; i < x.Length; i++)
            {
                var want = expected[i];
                if (want.IsConcrete)
                {
                    if (!(x[i].IsConcrete && x[i].Size == want.Size))
                        return Fail(ShapeErrorKind.SubmodelInputMismatch, $"the composed model takes {expectedText} but gets {ShapeText.Format(x)}: dimension {i} is {x[i]}, expected {want.Size}", null);
                }
                else if (bindings.TryGetValue(want.Symbol!, out var bound))
                {
                    if (!bound.Equals(x[i]))
                        return Fail(ShapeErrorKind.SubmodelInputMismatch, $"the composed model takes {expectedText} but gets {ShapeText.Format(x)}: '{want.Symbol}' would be both {bound} and {x[i]}", null);
                }
                else bindings[want.Symbol!] = x[i];
            }

            var sub = p.SubOutput ?? Array.Empty<Dim>();
            var outDims = new Dim[sub.Length];
            for (int i = 0; i < sub.Length; i++)
                outDims[i] = !sub[i].IsConcrete && bindings.TryGetValue(sub[i].Symbol!, out var b) ? b : sub[i];
            long repeat = (p.Own as BlockArguments)?.Repeat ?? 1;
            if (repeat > 1 && p.SubOutput is not null && !ShapesEqual(outDims, x))
                return Fail(ShapeErrorKind.RepeatedBlockShape, $"the block runs {repeat} times, each copy feeding the next, but turns {ShapeText.Format(x)} into {ShapeText.Format(outDims)}; a repeated block's output shape must equal its input shape", "Repeat");
            return Ok(outDims, checked(p.SubParams * Math.Max(1, repeat)), -1);
        }

        private static bool ShapesEqual(Dim[] a, Dim[] b)
        {
            if (a.Length != b.Length) return false;
            for (int i = 0; i < a.Length; i++) if (!a[i].Equals(b[i])) return false;
            return true;
        }

        public override Dim[] StandInInput(LayerParams p, Dim b, Dim c) => p.SubInput ?? new[] { b };
        public override bool StandInIsInteger(LayerParams p) => p.SubInputIsInteger;

#if MODELDSL_GENERATOR
        public override string Construct(LayerSpec l) => Repeat(l.Args) > 1
            ? $"new global::ModelDsl.Layers.Repeated({N(Repeat(l.Args))}, () => new {l.TypeName}(), {Generators.Emit.CSharpLiterals.String(l.OutputText)})"
            : $"new {l.TypeName}()";

        public override string? ConstructComment(LayerSpec l) => Repeat(l.Args) > 1
            ? $"// {N(Repeat(l.Args))} independent copies in sequence, as PyTorch's nn.Sequential(*copies): state-dict names {l.MemberName}.0.…, {l.MemberName}.1.…"
            : null;

        /// <summary>How many copies [Block(Repeat = n)] asks for (1 without it).</summary>
        public static long Repeat(LayerArgs a) => (a.Own as BlockArguments)?.Repeat ?? 1;
#endif
    }
}
