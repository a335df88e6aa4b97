namespace ModelDsl.Generators.Parsing
{
    /// <summary>
    /// One plan attribute's arguments ([Train], [Parallel], [Prune], [Quantize]) as the plan parsers read them: typed
    /// values with the attribute's defaults, enum members named from the compilation's own enum types (so no parser
    /// mirrors the DSL's member names), and a problem reported on the argument it concerns. Parsers name a property as
    /// <c>nameof(TrainAttribute.LearningRate)</c> (the DSL's attribute sources are compiled into the generator) and take
    /// the default a check needs from <c>PlanDefaults</c>, the one place the runtime reads too.
    /// </summary>
    internal sealed class PlanArguments
    {
        private readonly Dictionary<string, TypedConstant> _values;
        private readonly Action<DiagnosticDescriptor, Location?, string[]> _report;
        private readonly Action? _failed;

        /// <summary>Reads <paramref name="attribute"/>; <paramref name="failed"/> runs after each <see cref="Fail"/>.</summary>
        public PlanArguments(AttributeData attribute, Action<DiagnosticDescriptor, Location?, string[]> report, Action? failed = null)
        {
            Reader = LayerAttributeReader.For(attribute);
            _values = LayerAttributeReader.Arguments(attribute);
            _report = report;
            _failed = failed;
        }

        /// <summary>Where each argument was written.</summary>
        public LayerAttributeReader Reader { get; }

        /// <summary>False once any <see cref="Fail"/> was reported.</summary>
        public bool Ok { get; private set; } = true;

        /// <summary>Whether the use site wrote the argument.</summary>
        public bool Has(string name) => _values.ContainsKey(name);

        /// <summary>The argument's value, or <paramref name="fallback"/> (the attribute's default) when it was not written.</summary>
        public T Get<T>(string name, T fallback) => _values.TryGetValue(name, out var c) && c.Value is T v ? v : fallback;

        /// <summary>
        /// Adds the argument to the generated plan's <paramref name="values"/> as <paramref name="value"/> (checked, perhaps
        /// reshaped) when the use site wrote it; an argument left out stays unset, so the runtime's default applies.
        /// <paramref name="planName"/>: the plan property, when it is not named as the attribute's.
        /// </summary>
        public void AddIfWritten(List<PlanValue> values, string name, object? value, string? enumType = null, string? planName = null)
        {
            if (Has(name) && value is not null) values.Add(new PlanValue(planName ?? name, value, enumType));
        }

        /// <summary>
        /// The enum member the argument names, <paramref name="fallback"/> when it was not written, or null — reported
        /// as <paramref name="invalid"/> — when its value is no member (a cast such as <c>(Loss)42</c>).
        /// </summary>
        public string? Enum(string name, string fallback, DiagnosticDescriptor invalid)
        {
            if (!_values.TryGetValue(name, out var constant)) return fallback;
            string type = constant.Type?.Name ?? name;
            string value = Convert.ToString(constant.Value, CultureInfo.InvariantCulture) ?? "";
            var member = constant.Type?.GetMembers().OfType<IFieldSymbol>()
                .FirstOrDefault(f => f.HasConstantValue && Equals(f.ConstantValue, constant.Value));
            if (member is not null) return member.Name;
            Fail(invalid, name, $"({type}){value} is not {("AEIOU".IndexOf(type[0]) >= 0 ? "an" : "a")} {type}");
            return null;
        }

        /// <summary>As <see cref="Enum(string, string, DiagnosticDescriptor)"/>, as a member of the DSL enum <typeparamref name="TEnum"/>.</summary>
        public TEnum? Enum<TEnum>(string name, TEnum fallback, DiagnosticDescriptor invalid) where TEnum : struct, System.Enum =>
            Enum(name, fallback.ToString(), invalid) is { } member ? (TEnum)System.Enum.Parse(typeof(TEnum), member) : null;

        /// <summary>Reports <paramref name="descriptor"/> on <paramref name="argument"/> (the whole attribute when null).</summary>
        public void Fail(DiagnosticDescriptor descriptor, string? argument, params string[] args)
        {
            _report(descriptor, Reader.ArgumentLocation(argument), args);
            Ok = false;
            _failed?.Invoke();
        }

        /// <summary>A number as C# would write it back (round-trip, invariant culture).</summary>
        public static string Num(double d) => d.ToString("R", CultureInfo.InvariantCulture);

        /// <summary>An integer, invariant culture.</summary>
        public static string Int(long i) => i.ToString(CultureInfo.InvariantCulture);
    }
}
