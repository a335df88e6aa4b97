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
            : this(model, input, inputType, layers, null)
        {
        }

        /// <summary>
        /// Creates the summary of a graph model, whose layers name their sources and whose output is the layer
        /// <paramref name="outputLayer"/> (null: the last). Called by generated code.
        /// </summary>
        public ModelSummary(string model, string input, string inputType, IReadOnlyList<LayerSummary> layers, string? outputLayer)
            : this(model, input, inputType, layers, outputLayer, null)
        {
        }

        /// <summary>
        /// Creates the summary of a model with several inputs (<c>[Model(Inputs = ...)]</c>): <paramref name="input"/> is
        /// their packed row, <paramref name="inputs"/> each input by name. Called by generated code.
        /// </summary>
        public ModelSummary(string model, string input, string inputType, IReadOnlyList<LayerSummary> layers, string? outputLayer,
            IReadOnlyList<InputSummary>? inputs)
        {
            Model = model ?? throw new ArgumentNullException(nameof(model));
            Input = input ?? throw new ArgumentNullException(nameof(input));
            InputType = inputType ?? throw new ArgumentNullException(nameof(inputType));
            Layers = layers ?? throw new ArgumentNullException(nameof(layers));
            OutputLayer = outputLayer ?? (layers.Count == 0 ? null : layers[layers.Count - 1].Name);
            IsGraph = outputLayer is not null;
            Inputs = inputs ?? new[] { new InputSummary(InputName, Input) };
            // A chain layer reads the one before it (the first, the input): its sources are filled in here, so a
            // chain model's generated summary stays as it was before graphs.
            for (int i = 0; i < layers.Count; i++)
            {
                if (layers[i].Sources is null) layers[i].Sources = new[] { i == 0 ? InputName : layers[i - 1].Name };
                else IsGraph = true;
            }
        }

        /// <summary>The name a layer's <see cref="LayerSummary.Sources"/> give the model input.</summary>
        public const string InputName = "input";

        /// <summary>The model class name.</summary>
        public string Model { get; }
        /// <summary>The declared input shape, e.g. <c>(B, 64)</c>.</summary>
        public string Input { get; }
        /// <summary>
        /// The model's inputs, in the order its forward takes them: <c>"input"</c> and <see cref="Input"/> for a model
        /// with one, each declared input for a model with several (<see cref="Input"/> is then their packed row).
        /// </summary>
        public IReadOnlyList<InputSummary> Inputs { get; }

        /// <summary>Whether the model declares several inputs.</summary>
        public bool IsMultiInput => Inputs.Count > 1;

        /// <summary>The declared input element type, e.g. <c>Float32</c>.</summary>
        public string InputType { get; }
        /// <summary>The layers in execution order.</summary>
        public IReadOnlyList<LayerSummary> Layers { get; }

        /// <summary>The layer whose output the model returns (the last, unless <c>[Model(Output = ...)]</c> names another); null without layers.</summary>
        public string? OutputLayer { get; }

        /// <summary>Whether the model is a graph: some layer reads other than the layer before it, or the output is not the last layer.</summary>
        public bool IsGraph { get; }

        /// <summary>The output shape of the output layer, or the input shape for a model without layers.</summary>
        public string Output
        {
            get
            {
                foreach (var layer in Layers) if (layer.Name == OutputLayer) return layer.OutputShape;
                return Input;
            }
        }

        /// <summary>The layer named <paramref name="name"/>, or null.</summary>
        public LayerSummary? this[string name]
        {
            get
            {
                foreach (var layer in Layers) if (layer.Name == name) return layer;
                return null;
            }
        }

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
            var sources = new List<IReadOnlyList<string>>();
            foreach (var layer in Layers)
            {
                rows.Add((layer.Name, layer.Kind, layer.OutputShape, layer.Parameters));
                sources.Add(layer.Sources);
            }
            var inputs = new List<(string, string)>();
            foreach (var input in Inputs) inputs.Add((input.Name, input.Shape));
            return Shapes.LayerTable.Render(Model, InputType, Input, rows, IsGraph ? sources : null, IsMultiInput ? inputs : null);
        }
    }

    /// <summary>One input of a <see cref="ModelSummary"/>: the name layers read it by, and its declared shape.</summary>
    public sealed class InputSummary
    {
        /// <summary>Creates an input row. Called by generated code.</summary>
        public InputSummary(string name, string shape)
        {
            Name = name ?? throw new ArgumentNullException(nameof(name));
            Shape = shape ?? throw new ArgumentNullException(nameof(shape));
        }

        /// <summary>The input's name: a source name, and the generated forward's parameter.</summary>
        public string Name { get; }
        /// <summary>The declared shape, e.g. <c>(B, 1, 8, 8)</c>.</summary>
        public string Shape { get; }
    }

    /// <summary>One row of a <see cref="ModelSummary"/>.</summary>
    public sealed class LayerSummary
    {
        /// <summary>Creates a row. Called by generated code.</summary>
        public LayerSummary(string name, string kind, string outputShape, long parameters)
        {
            Name = name; Kind = kind; OutputShape = outputShape; Parameters = parameters;
            Sources = null!; // the chain's predecessor, filled in by ModelSummary
        }

        /// <summary>Creates a row of a graph model, with the layers it reads. Called by generated code.</summary>
        public LayerSummary(string name, string kind, string outputShape, long parameters, IReadOnlyList<string> sources)
            : this(name, kind, outputShape, parameters)
        {
            Sources = sources ?? throw new ArgumentNullException(nameof(sources));
        }

        /// <summary>The property name, which is also the registered sub-module name.</summary>
        public string Name { get; }
        /// <summary>The layer kind, e.g. <c>Linear</c>, or the model class name for a composed model.</summary>
        public string Kind { get; }
        /// <summary>The inferred output shape, e.g. <c>(B, 128)</c>; <c>?</c> where it cannot be known at compile time.</summary>
        public string OutputShape { get; }
        /// <summary>Trainable parameters of the layer.</summary>
        public long Parameters { get; }
        /// <summary>
        /// The layers it reads, in order (<c>"input"</c>: the model input): a chain layer's predecessor, the layer
        /// <c>From</c> names, or a merge's sources. The merge's kind is <see cref="Kind"/> (<c>Add</c>, <c>Multiply</c>,
        /// <c>Concat</c>; a Concat module holds its dim).
        /// </summary>
        public IReadOnlyList<string> Sources { get; internal set; }
    }
}
