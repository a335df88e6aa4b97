using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;

namespace ModelDsl.Generators.Diagnostics
{
    /// <summary>
    /// The one value an IDE code fix needs to repair a diagnostic mechanically (the inferred size for MD0101, the
    /// clamped amount for MD0301). The parsers append it after the message arguments, so it travels through the
    /// equatable pipeline like them; the generator's Split moves it into <see cref="Diagnostic.Properties"/> under
    /// <see cref="Key"/>, where ModelDsl.CodeFixes reads it. This file is linked into that assembly.
    /// </summary>
    internal static class FixValue
    {
        /// <summary>The property key the code fixes read.</summary>
        public const string Key = "ModelDsl.FixValue";

        /// <summary>The message arguments followed by the fix value.</summary>
        public static string[] Append(string[] messageArguments, string value) => messageArguments.Concat(new[] { value }).ToArray();

#if !MODELDSL_CODEFIXES
        /// <summary>
        /// Splits a diagnostic's arguments into those its message formats and the properties: an argument beyond the
        /// highest placeholder of <paramref name="descriptor"/>'s message is the fix value.
        /// </summary>
        public static (object[] Arguments, ImmutableDictionary<string, string?>? Properties) Split(DiagnosticDescriptor descriptor, IReadOnlyList<string> arguments)
        {
            int used = PlaceholderCount(descriptor.MessageFormat.ToString(System.Globalization.CultureInfo.InvariantCulture));
            if (arguments.Count <= used) return (arguments.ToArray<object>(), null);
            return (arguments.Take(used).ToArray<object>(), ImmutableDictionary<string, string?>.Empty.Add(Key, arguments[used]));
        }

        private static int PlaceholderCount(string format)
        {
            int max = -1;
            for (int i = 0; i < format.Length - 2; i++)
            {
                if (format[i] == '{' && char.IsDigit(format[i + 1]) && (i == 0 || format[i - 1] != '{'))
                {
                    int j = i + 1, n = 0;
                    while (j < format.Length && char.IsDigit(format[j])) n = n * 10 + (format[j++] - '0');
                    if (n > max) max = n;
                }
            }
            return max + 1;
        }
#endif
    }
}
