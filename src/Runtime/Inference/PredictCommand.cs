using System.CommandLine;
using System.Globalization;
using System.Text;
using ModelDsl.Runtime.Training;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>
    /// <c>predict --model PATH --data CSV [--output CSV]</c>: one output row per input row — the class and the
    /// probability of each class for a classifier, the output values otherwise. Inputs get the same
    /// <c>FeatureScale</c> as the training data did.
    /// </summary>
    internal static class PredictCommand
    {
        public const string Name = "predict";

        public static Command Create<TModel>(TrainingPlan plan, Func<TModel> create) where TModel : nn.Module<Tensor, Tensor>
        {
            var command = new ModelCommandBuilder(plan, Name, $"Predict with a trained {plan.ModelName}: one row per input" + (plan.IsClassification || plan.Loss == Loss.BCEWithLogits ? " with the class and the class probabilities" : " with the output values"))
                .WithModel();
            var data = command.Add(new Option<string>("--data") { Description = "Inputs (CSV: the features of one sample per row; a label column at the end is allowed and copied to the output)", HelpName = "CSV", Required = true });
            var output = command.Add(new Option<string?>("--output") { Description = "Write the predictions to this CSV file instead of standard output", HelpName = "CSV" });
            return command.WithBatchSize("Samples per forward pass", () => Predictor.DefaultBatchSize).WithCsvLayout(csvRowsOnly: true).Build((parsed, runPlan) =>
            {
                int batchSize = command.BatchSize(parsed);
                string modelPath = command.ModelPath(parsed, runPlan);
                string csv = Predict(runPlan, create, modelPath, TrainingData.ResolvePath(parsed.GetValue(data)!), batchSize);
                if (parsed.GetValue(output) is { Length: > 0 } outputPath)
                {
                    ModelFiles.AtomicWrite(outputPath, s => s.Write(Encoding.UTF8.GetBytes(csv)));
                    Console.Error.WriteLine($"predictions: {outputPath}");
                }
                else Console.Write(csv);
                return 0;
            });
        }

        /// <summary>The predictions for the rows of <paramref name="dataPath"/> as CSV text with a header line.</summary>
        public static string Predict<TModel>(TrainingPlan plan, Func<TModel> create, string modelPath, string dataPath, int batchSize)
            where TModel : nn.Module<Tensor, Tensor>
        {
            using var net = ModelLoader.Load(modelPath, create, plan.ModelName);
            var signature = ModelSignature.FromPlan(plan);
            var (features, labels) = FeatureCsv.Load(dataPath, plan.SampleShape, TrainingData.CsvOptionsOf(plan));
            using var scope = torch.NewDisposeScope();
            var x = features;
            if (plan.FeatureScale != 1.0 && !plan.InputIsInteger) x = x.mul(plan.FeatureScale);
            if (plan.InputIsInteger) x = x.to_type(ScalarType.Int64);
            var raw = Predictor.Forward(net, x, signature, batchSize);
            features.Dispose();

            var sb = new StringBuilder();
            // Shortest round-trip text of the float32 values: what the model computed, no digits it did not.
            string R(float v) => v.ToString("R", CultureInfo.InvariantCulture);
            long n = raw.shape[0];
            if (signature.IsClassifier)
            {
                var classes = Predictor.Classes(raw, signature.Output).data<long>().ToArray();
                var probabilities = Predictor.Probabilities(raw, signature.Output).to_type(ScalarType.Float32);
                int k = (int)probabilities.shape[1];
                float[] p = probabilities.data<float>().ToArray();
                sb.Append(labels is null ? "" : "label,").Append("class");
                for (int c = 0; c < k; c++) sb.Append(",p").Append(c.ToString(CultureInfo.InvariantCulture));
                sb.Append('\n');
                for (long i = 0; i < n; i++)
                {
                    if (labels is not null) sb.Append(labels[i]).Append(',');
                    sb.Append(classes[i].ToString(CultureInfo.InvariantCulture));
                    for (int c = 0; c < k; c++) sb.Append(',').Append(R(p[i * k + c]));
                    sb.Append('\n');
                }
                return sb.ToString();
            }

            var flat = raw.reshape(n, -1).to_type(ScalarType.Float32);
            int width = (int)flat.shape[1];
            float[] values = flat.data<float>().ToArray();
            sb.Append(labels is null ? "" : "label,");
            sb.Append(string.Join(",", Enumerable.Range(0, width).Select(j => "y" + j.ToString(CultureInfo.InvariantCulture)))).Append('\n');
            for (long i = 0; i < n; i++)
            {
                if (labels is not null) sb.Append(labels[i]).Append(',');
                sb.Append(string.Join(",", Enumerable.Range(0, width).Select(j => R(values[i * width + j])))).Append('\n');
            }
            return sb.ToString();
        }
    }
}
