using ModelDsl.Runtime.Training;
using ModelDsl.Shapes;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>What a model's output means, which decides what <c>Predict</c> and <c>PredictProba</c> return.</summary>
    public enum ModelOutput
    {
        /// <summary>Plain values (regression, or a model without [Train]): <c>Predict</c> returns the output itself.</summary>
        Values,
        /// <summary>Class scores <c>(B, C)</c> for cross-entropy: probabilities are their softmax.</summary>
        ClassLogits,
        /// <summary>Log-probabilities <c>(B, C)</c> for NLL (after <c>[LogSoftmax(1)]</c>): probabilities are their exp.</summary>
        ClassLogProbabilities,
        /// <summary>One logit per sample for BCE-with-logits: P(class 1) is its sigmoid.</summary>
        BinaryLogit,
    }

    /// <summary>
    /// The facts prediction needs about a model, known at compile time: its name, its declared input shape (with
    /// the symbolic batch dim) and dtype, and what its output means. Generated models expose theirs as
    /// <c>Model.Signature</c>.
    /// </summary>
    public sealed record ModelSignature
    {
        private readonly Dim[] _dims;

        /// <summary>Creates a signature; <paramref name="input"/> is the <c>[Model(Input = ...)]</c> text, e.g. <c>"B, 1, 8, 8"</c>.</summary>
        public ModelSignature(string modelName, string input, bool inputIsInteger = false, ModelOutput output = ModelOutput.Values)
        {
            ArgumentException.ThrowIfNullOrEmpty(modelName);
            if (!ShapeText.TryParse(input, out var dims, out string error))
                throw new ArgumentException($"'{input}' is not an input shape: {error}", nameof(input));
            ModelName = modelName;
            Input = ShapeText.Format(dims);
            InputIsInteger = inputIsInteger;
            Output = output;
            _dims = dims;
        }

        /// <summary>The model class name.</summary>
        public string ModelName { get; }
        /// <summary>The declared input shape as PyTorch prints sizes, e.g. <c>(B, 1, 8, 8)</c>.</summary>
        public string Input { get; }
        /// <summary>Whether the model takes integer ids (int64) rather than float32 values.</summary>
        public bool InputIsInteger { get; }
        /// <summary>What the model's output means.</summary>
        public ModelOutput Output { get; }

        /// <summary>Whether the model is a classifier (it has class probabilities).</summary>
        public bool IsClassifier => Output != ModelOutput.Values;

        /// <summary>The declared input rank, the batch dim included.</summary>
        public int Rank => _dims.Length;

        /// <summary>Dimension <paramref name="i"/>: its size, or -1 and its symbol when symbolic.</summary>
        public (long Size, string? Symbol) Dim(int i) => (_dims[i].Size, _dims[i].Symbol);

        /// <summary>The signature a [Train] plan implies: the sample shape under a batch dim, and the loss's output meaning.</summary>
        public static ModelSignature FromPlan(TrainingPlan plan)
        {
            ArgumentNullException.ThrowIfNull(plan);
            string input = "B" + string.Concat(Array.ConvertAll(plan.SampleShape, d => ", " + d.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            return new ModelSignature(plan.ModelName, input, plan.InputIsInteger, OutputOf(plan.Loss));
        }

        /// <summary>What a model trained with <paramref name="loss"/> outputs.</summary>
        public static ModelOutput OutputOf(Loss loss) => loss switch
        {
            Loss.CrossEntropy => ModelOutput.ClassLogits,
            Loss.NLL => ModelOutput.ClassLogProbabilities,
            Loss.BCEWithLogits => ModelOutput.BinaryLogit,
            _ => ModelOutput.Values,
        };
    }
}
