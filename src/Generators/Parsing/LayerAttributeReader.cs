namespace ModelDsl.Generators.Parsing
{
    /// <summary>
    /// Reads a layer attribute's arguments (positional and named) into <see cref="LayerParams"/>: from Roslyn's bound
    /// <see cref="AttributeData"/>, or from the attribute's syntax alone (<see cref="LayerAttributeSyntax"/>), which gives
    /// the same values where the syntax settles them.
    /// </summary>
    internal sealed class LayerAttributeReader : ILayerArguments
    {
        private readonly Dictionary<string, ArgumentValue> _values;
        private readonly AttributeData? _attribute;
        private readonly AttributeSyntax? _syntax;
        private readonly IMethodSymbol? _constructor;

        private LayerAttributeReader(AttributeData attribute)
        {
            _attribute = attribute;
            _constructor = attribute.AttributeConstructor;
            _values = new Dictionary<string, ArgumentValue>(StringComparer.Ordinal);
            foreach (var pair in Arguments(attribute)) _values[pair.Key] = ArgumentValue.From(pair.Value);
        }

        private LayerAttributeReader(AttributeSyntax syntax, IMethodSymbol constructor, Dictionary<string, ArgumentValue> values)
        {
            _syntax = syntax;
            _constructor = constructor;
            _values = values;
        }

        public static LayerAttributeReader For(AttributeData attribute) => new(attribute);

        /// <summary>A reader of arguments read from syntax, as <see cref="For"/> would have read them from the bound attribute.</summary>
        internal static LayerAttributeReader FromSyntax(AttributeSyntax syntax, IMethodSymbol constructor, Dictionary<string, ArgumentValue> values) =>
            new(syntax, constructor, values);

        /// <summary>An attribute's arguments by name: constructor parameters by parameter name, then named arguments.</summary>
        public static Dictionary<string, TypedConstant> Arguments(AttributeData attribute)
        {
            var values = new Dictionary<string, TypedConstant>(StringComparer.Ordinal);
            if (attribute.AttributeConstructor is { } ctor)
                for (int i = 0; i < ctor.Parameters.Length && i < attribute.ConstructorArguments.Length; i++)
                    values[ctor.Parameters[i].Name] = attribute.ConstructorArguments[i];
            foreach (var named in attribute.NamedArguments) values[named.Key] = named.Value;
            return values;
        }

        /// <summary>
        /// The layer's arguments: the common ones here (sizes, bias), then what only its kind has (<see cref="LayerKind.Read"/>).
        /// Defaults repeat the attribute classes' initialisers (PyTorch's defaults), because a generator sees only the
        /// arguments written at the use site.
        /// </summary>
        public LayerParams ReadParams(LayerKind kind)
        {
            var p = new LayerParams
            {
                In = Long("inFeatures", "inChannels", "numFeatures", "normalizedShape") ?? -1,
                Out = Long("outFeatures", "outChannels", "embeddingDim") ?? -1,
                Count = Long("numEmbeddings") ?? -1,
                Bias = Bool("Bias") ?? true,
                From = String("From"),
            };
            kind.Read(p, this);
            return p;
        }

        /// <summary>A Linear's <c>TiedTo</c> layer name, or null.</summary>
        public string? TiedTo => String("TiedTo");

        /// <summary>Whether the value was written at the use site (rather than defaulted).</summary>
        public bool Has(string name) => _values.ContainsKey(name);

        /// <summary>The location of one argument, falling back to the whole attribute.</summary>
        public Location? ArgumentLocation(string? name)
        {
            // AdaptiveAvgPool2d(outputSize) sets both; the rules name the height or width.
            if ((name is "outputHeight" or "outputWidth") && !Has(name)) name = "outputSize";
            // StrideW blamed but only Stride written (it sets both axes), or the other way round.
            if (name is "StrideH" or "StrideW" or "PaddingH" or "PaddingW" or "DilationH" or "DilationW" && !Has(name))
                name = name.Substring(0, name.Length - 1);
            else if (name is "Stride" or "Padding" or "Dilation" && !Has(name))
                name = Has(name + "H") ? name + "H" : Has(name + "W") ? name + "W" : name;
            var syntax = _syntax ?? _attribute?.ApplicationSyntaxReference?.GetSyntax() as AttributeSyntax;
            if (syntax is null) return null;
            if (name is null || syntax.ArgumentList is null) return syntax.GetLocation();

            var args = syntax.ArgumentList.Arguments;
            // "[i]": the i-th positional argument (a Concat's sources, a params array).
            if (name.Length > 2 && name[0] == '[' && int.TryParse(name.Substring(1, name.Length - 2), NumberStyles.None, CultureInfo.InvariantCulture, out int position))
                return position < args.Count && args[position].NameEquals is null ? args[position].GetLocation() : syntax.GetLocation();
            foreach (var a in args)
            {
                if (a.NameEquals?.Name.Identifier.ValueText == name || a.NameColon?.Name.Identifier.ValueText == name)
                    return a.GetLocation();
            }

            var ctor = _constructor;
            if (ctor is not null)
            {
                for (int i = 0; i < ctor.Parameters.Length; i++)
                {
                    if (ctor.Parameters[i].Name != name) continue;
                    if (i < args.Count && args[i].NameEquals is null && args[i].NameColon is null)
                        return args[i].GetLocation();
                }
            }
            return syntax.GetLocation();
        }

        public long? Long(params string[] names)
        {
            foreach (var name in names)
            {
                if (_values.TryGetValue(name, out var c) && !c.IsNull && c.Kind == TypedConstantKind.Primitive)
                {
                    switch (c.Value)
                    {
                        case int i: return i;
                        case long l: return l;
                        case short s: return s;
                        case byte b: return b;
                    }
                }
            }
            return null;
        }

        public long[]? LongArray(string name)
        {
            if (!_values.TryGetValue(name, out var c) || c.Kind != TypedConstantKind.Array || c.IsNull) return null;
            var result = new long[c.Values!.Length];
            for (int i = 0; i < result.Length; i++)
                result[i] = c.Values[i].Value switch { int v => v, long v => v, _ => 0 };
            return result;
        }

        public string?[]? StringArray(string name)
        {
            if (!_values.TryGetValue(name, out var c) || c.Kind != TypedConstantKind.Array || c.IsNull) return null;
            var result = new string?[c.Values!.Length];
            for (int i = 0; i < result.Length; i++) result[i] = c.Values[i].Value as string;
            return result;
        }

        public double? Double(string name)
        {
            if (_values.TryGetValue(name, out var c) && !c.IsNull && c.Kind == TypedConstantKind.Primitive)
            {
                switch (c.Value)
                {
                    case double d: return d;
                    case float f: return f;
                    case int i: return i;
                }
            }
            return null;
        }

        public bool? Bool(string name) =>
            _values.TryGetValue(name, out var c) && !c.IsNull && c.Value is bool b ? b : null;

        public string? String(string name) =>
            _values.TryGetValue(name, out var c) && !c.IsNull ? c.Value as string : null;
    }

    /// <summary>One argument's value: what <see cref="LayerAttributeReader"/> reads of a <see cref="TypedConstant"/>.</summary>
    internal readonly struct ArgumentValue
    {
        public ArgumentValue(TypedConstantKind kind, object? value, ArgumentValue[]? values = null)
        {
            Kind = kind; Value = value; Values = values;
        }

        public TypedConstantKind Kind { get; }
        /// <summary>The value of a primitive or enum (its underlying value); null for an array.</summary>
        public object? Value { get; }
        /// <summary>The elements of an array; null for a null array.</summary>
        public ArgumentValue[]? Values { get; }
        public bool IsNull => Kind == TypedConstantKind.Array ? Values is null : Value is null;

        public static ArgumentValue From(TypedConstant c)
        {
            if (c.Kind != TypedConstantKind.Array) return new ArgumentValue(c.Kind, c.IsNull ? null : c.Value);
            if (c.IsNull) return new ArgumentValue(c.Kind, null);
            var values = new ArgumentValue[c.Values.Length];
            for (int i = 0; i < values.Length; i++) values[i] = From(c.Values[i]);
            return new ArgumentValue(c.Kind, null, values);
        }
    }
}
