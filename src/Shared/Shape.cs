using System.Text;

// Shared by the generator (compile-time checks) and the runtime (checks on real data), linked into both,
// so the two can never disagree on what "B, 1, 8, 8" means.
namespace ModelDsl.Shapes
{
    /// <summary>One dimension: a concrete size, or a symbol such as <c>B</c> whose size is known only at run time.</summary>
    internal readonly struct Dim : IEquatable<Dim>
    {
        private Dim(long size, string? symbol) { Size = size; Symbol = symbol; }

        public long Size { get; }
        public string? Symbol { get; }
        public bool IsConcrete => Symbol is null;
        /// <summary>A size no rule can know at compile time ('?': a strided window over a symbolic size); libtorch checks it.</summary>
        public bool IsUnknown => Symbol == "?";

        public static Dim Of(long size) => new Dim(size, null);
        public static Dim Sym(string symbol) => new Dim(-1, symbol);

        public bool Equals(Dim other) => Size == other.Size && Symbol == other.Symbol;
        public override bool Equals(object? obj) => obj is Dim d && Equals(d);
        public override int GetHashCode() => Symbol is null ? Size.GetHashCode() : Symbol.GetHashCode();
        public override string ToString() => Symbol ?? Size.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    internal static class ShapeText
    {
        /// <summary>Formats dims as PyTorch prints sizes: <c>(B, 64)</c>.</summary>
        public static string Format(IReadOnlyList<Dim> dims)
        {
            var sb = new StringBuilder("(");
            for (int i = 0; i < dims.Count; i++)
            {
                if (i > 0) sb.Append(", ");
                sb.Append(dims[i].ToString());
            }
            return sb.Append(')').ToString();
        }

        /// <summary>The rank of a shape <see cref="Format"/> wrote (<c>(B, 8, 4, 4)</c>: 4); 0 for anything else.</summary>
        public static int Rank(string? text) =>
            text is { Length: > 2 } && text[0] == '(' && text[text.Length - 1] == ')' ? text.Split(',').Length : 0;

        /// <summary>
        /// Parses an input spec: comma-separated dims, each a positive integer or an identifier
        /// (letter or underscore, then letters, digits, underscores). Optional surrounding parentheses.
        /// </summary>
        public static bool TryParse(string? text, out Dim[] dims, out string error)
        {
            dims = Array.Empty<Dim>();
            if (text is null || text.Trim().Length == 0)
            {
                error = "the input shape is empty; write its dimensions, e.g. \"B, 64\"";
                return false;
            }

            string body = text.Trim();
            if (body.StartsWith("(", StringComparison.Ordinal) && body.EndsWith(")", StringComparison.Ordinal))
                body = body.Substring(1, body.Length - 2);

            string[] parts = body.Split(',');
            var result = new Dim[parts.Length];
            for (int i = 0; i < parts.Length; i++)
            {
                string p = parts[i].Trim();
                if (p.Length == 0)
                {
                    error = $"dimension {i} is empty";
                    return false;
                }
                if (char.IsDigit(p[0]) || p[0] == '-' || p[0] == '+')
                {
                    if (!long.TryParse(p, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long size))
                    {
                        error = $"dimension {i} ('{p}') is neither a whole number nor a symbol";
                        return false;
                    }
                    if (size < 1 || size > int.MaxValue)
                    {
                        error = $"dimension {i} is {p}; sizes must be between 1 and {int.MaxValue}";
                        return false;
                    }
                    result[i] = Dim.Of(size);
                    continue;
                }
                if (!IsIdentifier(p))
                {
                    error = $"dimension {i} ('{p}') is neither a whole number nor a symbol (a name like B or T)";
                    return false;
                }
                result[i] = Dim.Sym(p);
            }
            dims = result;
            error = "";
            return true;
        }

        /// <summary>
        /// Parses one entry of <c>[Model(Inputs = ...)]</c>: <c>"name: shape"</c>, the name an identifier and the shape
        /// as <see cref="TryParse"/> reads it.
        /// </summary>
        public static bool TryParseNamed(string? text, out string name, out Dim[] dims, out string error)
        {
            name = "";
            dims = Array.Empty<Dim>();
            int colon = text?.IndexOf(':') ?? -1;
            if (text is null || colon < 0)
            {
                error = $"\"{text}\" is not \"name: shape\"; write e.g. \"meta: B, 4\"";
                return false;
            }
            name = text.Substring(0, colon).Trim();
            if (name.Length == 0 || !IsIdentifier(name))
            {
                error = $"\"{text}\": the input name '{name}' is not an identifier (letters, digits, underscores; e.g. \"meta: B, 4\")";
                return false;
            }
            if (!TryParse(text.Substring(colon + 1), out dims, out string shapeError))
            {
                error = $"\"{text}\": the shape of '{name}' is malformed: {shapeError}";
                return false;
            }
            error = "";
            return true;
        }

        private static bool IsIdentifier(string s)
        {
            if (!(char.IsLetter(s[0]) || s[0] == '_')) return false;
            foreach (char c in s)
                if (!(char.IsLetterOrDigit(c) || c == '_')) return false;
            return true;
        }
    }
}
