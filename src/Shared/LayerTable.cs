using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;

// Linked into the DSL assembly (ModelSummary.ToString at run time) and the generator (the XML remarks of every
// generated model), so the table a user reads in the IDE is the one the program prints.
namespace ModelDsl.Shapes
{
    /// <summary>
    /// The Keras-style layer table of a model: layer, type, output shape, parameters, and the total; a graph model's
    /// table has a From column (each layer's sources) after the type.
    /// </summary>
    internal static class LayerTable
    {
        public static string Render(string model, string inputType, string input, IEnumerable<(string Name, string Kind, string Output, long Parameters)> layers,
            IReadOnlyList<IReadOnlyList<string>>? sources = null, IReadOnlyList<(string Name, string Shape)>? inputs = null)
        {
            bool graph = sources is not null;
            var rows = new List<string[]>
            {
                graph ? new[] { "Layer", "Type", "From", "Output shape", "Params" } : new[] { "Layer", "Type", "Output shape", "Params" },
            };
            // Several inputs: a row each, by name (the packed row they make is the model's one-tensor input).
            foreach (var (name, shape) in inputs ?? new[] { ("input", input) })
                rows.Add(graph ? new[] { "(" + name + ")", inputType, "", shape, "" } : new[] { "(" + name + ")", inputType, shape, "" });
            long total = 0;
            int index = 0;
            foreach (var layer in layers)
            {
                rows.Add(graph
                    ? new[] { layer.Name, layer.Kind, string.Join(", ", sources![index]), layer.Output, Count(layer.Parameters) }
                    : new[] { layer.Name, layer.Kind, layer.Output, Count(layer.Parameters) });
                total += layer.Parameters;
                index++;
            }

            int columns = rows[0].Length;
            var widths = new int[columns];
            foreach (var row in rows)
                for (int i = 0; i < columns; i++) widths[i] = Math.Max(widths[i], row[i].Length);
            int lineWidth = widths.Sum() + 2 * (columns - 1);

            var sb = new StringBuilder((lineWidth + 1) * (rows.Count + 5) + model.Length + 32);
            sb.Append("Model: ").Append(model).Append('\n');
            sb.Append('=', lineWidth).Append('\n');
            for (int r = 0; r < rows.Count; r++)
            {
                var row = rows[r];
                for (int i = 0; i < columns - 1; i++) sb.Append(row[i]).Append(' ', widths[i] - row[i].Length + 2);
                // The parameter counts right-aligned, as Keras prints them.
                sb.Append(' ', widths[columns - 1] - row[columns - 1].Length).Append(row[columns - 1]).Append('\n');
                if (r == 0) sb.Append('-', lineWidth).Append('\n');
            }
            sb.Append('=', lineWidth).Append('\n');
            sb.Append("Total params: ").Append(Count(total)).Append('\n');
            return sb.ToString();
        }

        public static string Count(long n) => n.ToString("N0", CultureInfo.InvariantCulture);
    }
}
