using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

// Linked into the DSL assembly (ModelSummary.ToString at run time) and the generator (the XML remarks of every
// generated model), so the table a user reads in the IDE is the one the program prints.
namespace ModelDsl.Shapes
{
    /// <summary>The Keras-style layer table of a model: layer, type, output shape, parameters, and the total.</summary>
    internal static class LayerTable
    {
        public static string Render(string model, string inputType, string input, IEnumerable<(string Name, string Kind, string Output, long Parameters)> layers)
        {
            var rows = new List<string[]> { new[] { "Layer", "Type", "Output shape", "Params" }, new[] { "(input)", inputType, input, "" } };
            long total = 0;
            foreach (var layer in layers)
            {
                rows.Add(new[] { layer.Name, layer.Kind, layer.Output, Count(layer.Parameters) });
                total += layer.Parameters;
            }

            var widths = new int[4];
            foreach (var row in rows)
                for (int i = 0; i < 4; i++) widths[i] = Math.Max(widths[i], row[i].Length);
            int lineWidth = widths[0] + widths[1] + widths[2] + widths[3] + 6;

            var sb = new StringBuilder();
            sb.Append("Model: ").Append(model).Append('\n');
            sb.Append('=', lineWidth).Append('\n');
            for (int r = 0; r < rows.Count; r++)
            {
                var row = rows[r];
                sb.Append(row[0].PadRight(widths[0])).Append("  ")
                  .Append(row[1].PadRight(widths[1])).Append("  ")
                  .Append(row[2].PadRight(widths[2])).Append("  ")
                  .Append(row[3].PadLeft(widths[3])).Append('\n');
                if (r == 0) sb.Append('-', lineWidth).Append('\n');
            }
            sb.Append('=', lineWidth).Append('\n');
            sb.Append("Total params: ").Append(Count(total)).Append('\n');
            return sb.ToString();
        }

        public static string Count(long n) => n.ToString("N0", CultureInfo.InvariantCulture);
    }
}
