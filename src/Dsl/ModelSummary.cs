using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace ModelDsl
{
    /// <summary>
    /// The compile-time summary of a <see cref="ModelAttribute">[Model]</see> class: every layer with its output
    /// shape and parameter count, as the compiler inferred them. Generated models expose it as the static
    /// <c>Summary</c> property; <see cref="ToString"/> prints a Keras-style table.
    /// </summary>
    public sealed class ModelSummary
    {
        /// <summary>Creates a summary. Called by generated code.</summary>
        public ModelSummary(string model, string input, string inputType, IReadOnlyList<LayerSummary> layers)
        {
            Model = model ?? throw new ArgumentNullException(nameof(model));
            Input = input ?? throw new ArgumentNullException(nameof(input));
            InputType = inputType ?? throw new ArgumentNullException(nameof(inputType));
            Layers = layers ?? throw new ArgumentNullException(nameof(layers));
        }

        /// <summary>The model class name.</summary>
        public string Model { get; }
        /// <summary>The declared input shape, e.g. <c>(B, 64)</c>.</summary>
        public string Input { get; }
        /// <summary>The declared input element type, e.g. <c>Float32</c>.</summary>
        public string InputType { get; }
        /// <summary>The layers in execution order.</summary>
        public IReadOnlyList<LayerSummary> Layers { get; }

        /// <summary>The output shape of the last layer, or the input shape for a model without layers.</summary>
        public string Output => Layers.Count == 0 ? Input : Layers[Layers.Count - 1].OutputShape;

        /// <summary>Total number of trainable parameters.</summary>
        public long TotalParameters
        {
            get
            {
                long total = 0;
                foreach (var layer in Layers) total += layer.Parameters;
                return total;
            }
        }

        /// <summary>A Keras-style table: layer, type, output shape, parameters, and the total.</summary>
        public override string ToString()
        {
            var rows = new List<string[]> { new[] { "Layer", "Type", "Output shape", "Params" } };
            rows.Add(new[] { "(input)", InputType, Input, "" });
            foreach (var layer in Layers)
                rows.Add(new[] { layer.Name, layer.Kind, layer.OutputShape, Format(layer.Parameters) });

            var widths = new int[4];
            foreach (var row in rows)
                for (int i = 0; i < 4; i++) widths[i] = Math.Max(widths[i], row[i].Length);

            int lineWidth = widths[0] + widths[1] + widths[2] + widths[3] + 6;
            var sb = new StringBuilder();
            sb.Append("Model: ").Append(Model).Append('\n');
            sb.Append(new string('=', lineWidth)).Append('\n');
            for (int r = 0; r < rows.Count; r++)
            {
                var row = rows[r];
                sb.Append(row[0].PadRight(widths[0])).Append("  ")
                  .Append(row[1].PadRight(widths[1])).Append("  ")
                  .Append(row[2].PadRight(widths[2])).Append("  ")
                  .Append(row[3].PadLeft(widths[3])).Append('\n');
                if (r == 0) sb.Append(new string('-', lineWidth)).Append('\n');
            }
            sb.Append(new string('=', lineWidth)).Append('\n');
            sb.Append("Total params: ").Append(Format(TotalParameters)).Append('\n');
            return sb.ToString();
        }

        private static string Format(long n) => n.ToString("N0", CultureInfo.InvariantCulture);
    }

    /// <summary>One row of a <see cref="ModelSummary"/>.</summary>
    public sealed class LayerSummary
    {
        /// <summary>Creates a row. Called by generated code.</summary>
        public LayerSummary(string name, string kind, string outputShape, long parameters)
        {
            Name = name; Kind = kind; OutputShape = outputShape; Parameters = parameters;
        }

        /// <summary>The property name, which is also the registered sub-module name.</summary>
        public string Name { get; }
        /// <summary>The layer kind, e.g. <c>Linear</c>, or the model class name for a composed model.</summary>
        public string Kind { get; }
        /// <summary>The inferred output shape, e.g. <c>(B, 128)</c>; <c>?</c> where it cannot be known at compile time.</summary>
        public string OutputShape { get; }
        /// <summary>Trainable parameters of the layer.</summary>
        public long Parameters { get; }
    }
}
