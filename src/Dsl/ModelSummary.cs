using System;
using System.Collections.Generic;

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
            var rows = new List<(string, string, string, long)>();
            foreach (var layer in Layers) rows.Add((layer.Name, layer.Kind, layer.OutputShape, layer.Parameters));
            return Shapes.LayerTable.Render(Model, InputType, Input, rows);
        }
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
