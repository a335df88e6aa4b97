using System.Text;

namespace ModelDsl.Generators.Emit
{
    /// <summary>Values written into generated code as C# literals; the one place the emitters format them.</summary>
    internal static class CSharpLiterals
    {
        /// <summary>A double that round-trips (<c>0.1</c>, <c>1.0</c>, <c>1E-05</c>); NaN and the infinities by name.</summary>
        public static string Double(double value)
        {
            if (double.IsNaN(value)) return "double.NaN";
            if (double.IsPositiveInfinity(value)) return "double.PositiveInfinity";
            if (double.IsNegativeInfinity(value)) return "double.NegativeInfinity";
            string text = value.ToString("R", CultureInfo.InvariantCulture);
            return text.IndexOfAny(new[] { '.', 'E', 'e' }) >= 0 ? text : text + ".0";
        }

        /// <summary>An integer, invariant culture.</summary>
        public static string Long(long value) => value.ToString(CultureInfo.InvariantCulture);

        /// <summary><c>true</c> or <c>false</c>.</summary>
        public static string Bool(bool value) => value ? "true" : "false";

        /// <summary>A quoted, escaped string literal.</summary>
        public static string String(string text)
        {
            // Most are names and shapes with nothing to escape: one concatenation, no builder.
            bool plain = true;
            foreach (char c in text)
            {
                if (c == '"' || c == '\\' || char.IsControl(c)) { plain = false; break; }
            }
            if (plain) return "\"" + text + "\"";
            var sb = new StringBuilder("\"");
            foreach (char c in text)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    default:
                        if (char.IsControl(c)) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        else sb.Append(c);
                        break;
                }
            }
            return sb.Append('"').ToString();
        }
    }
}
