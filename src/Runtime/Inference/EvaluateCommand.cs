using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using ModelDsl.Runtime.Data;
using ModelDsl.Runtime.Training;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>
    /// <c>evaluate --model PATH --data CSV</c>: the loss and, for classifiers, accuracy, per-class precision, recall
    /// and F1 and the confusion matrix of a trained model on labelled data — printed as a table, or as JSON with
    /// <c>--json</c>, and written as JSON with <c>--report</c>.
    /// </summary>
    internal static class EvaluateCommand
    {
        public const string Name = "evaluate";

        public static Command Create<TModel>(TrainingPlan plan, Func<TModel> create) where TModel : nn.Module<Tensor, Tensor>
        {
            var command = new ModelCommandBuilder(plan, Name, $"Evaluate a trained {plan.ModelName} on labelled data: loss" + (plan.IsClassification || plan.Loss == Loss.BCEWithLogits ? ", accuracy, per-class precision/recall/F1 and the confusion matrix" : ""))
                .WithModel();
            var data = command.Add(new Option<string>("--data")
            {
                Description = "Labelled data (CSV: features, then the label)" + (plan.TestData.Length > 0 ? $" (default: the declared test data, {plan.TestData})" : ""),
                DefaultValueFactory = _ => plan.TestData,
                HelpName = "CSV",
            });
            var report = command.Add(new Option<string?>("--report") { Description = "Also write the results as JSON to PATH", HelpName = "PATH" });
            var json = command.Add(new Option<bool>("--json") { Description = "Print JSON instead of the table" });
            return command.WithBatchSize("Samples per forward pass", () => Predictor.DefaultBatchSize).WithCsvLayout(csvRowsOnly: true).Build((parsed, runPlan) =>
            {
                string dataPath = parsed.GetValue(data) ?? "";
                if (dataPath.Length == 0) throw new TrainingException($"no data to evaluate on: {runPlan.ModelName}'s [Train] declares no TestData; pass --data CSV");
                int batchSize = command.BatchSize(parsed);
                string modelPath = command.ModelPath(parsed, runPlan);
                var result = Evaluate(runPlan, create, modelPath, dataPath, batchSize);
                string text = JsonSerializer.Serialize(result, Json);
                if (parsed.GetValue(report) is { Length: > 0 } reportPath)
                    ModelFiles.AtomicWrite(reportPath, s => s.Write(System.Text.Encoding.UTF8.GetBytes(text + "\n")));
                Console.WriteLine(parsed.GetValue(json) ? text : result.ToText());
                return 0;
            });
        }

        /// <summary>Loads the model and the data and computes every figure of the evaluation.</summary>
        public static EvaluationResult Evaluate<TModel>(TrainingPlan plan, Func<TModel> create, string modelPath, string dataPath, int batchSize)
            where TModel : nn.Module<Tensor, Tensor>
        {
            using var net = ModelLoader.Load(modelPath, create, plan.ModelName);
            var labelKind = plan.IsClassification ? LabelKind.ClassIndex : LabelKind.Float;
            using var dataset = TrainingData.LoadFile(dataPath, plan, labelKind);
            var signature = ModelSignature.FromPlan(plan);
            using var scope = torch.NewDisposeScope();
            var output = Predictor.Forward(net, dataset.Features, signature, batchSize);
            double loss = LossFunctions.Compute(plan, output, dataset.Labels).to_type(ScalarType.Float64).item<double>();
            var (epoch, what) = Describe(modelPath, net);
            var result = new EvaluationResult
            {
                Model = plan.ModelName,
                ModelFile = modelPath,
                Epoch = epoch,
                ModelDescription = what,
                Data = TrainingData.ResolvePath(dataPath),
                Samples = dataset.Count,
                LossFunction = plan.LossName,
                Loss = loss,
            };
            if (!signature.IsClassifier) return result;

            long[] predicted = Predictor.Classes(output, signature.Output).data<long>().ToArray();
            long[] actual = plan.IsClassification
                ? dataset.Labels.data<long>().ToArray()
                : dataset.Labels.gt(0.5).to_type(ScalarType.Int64).data<long>().ToArray();
            int classes = signature.Output == ModelOutput.BinaryLogit ? 2 : (int)output.shape[1];
            var metrics = new ClassificationMetrics(classes, actual, predicted);
            var macro = metrics.MacroAverage;
            var weighted = metrics.WeightedAverage;
            return result with
            {
                Accuracy = metrics.Accuracy,
                ConfusionMatrix = metrics.Confusion,
                PerClass = metrics.PerClass.ToList(),
                MacroAverage = new Averages(macro.Precision, macro.Recall, macro.F1),
                WeightedAverage = new Averages(weighted.Precision, weighted.Recall, weighted.F1),
                Table = metrics.ToTable(),
            };
        }

        /// <summary>
        /// Which model was scored: a checkpoint's epoch (and, for <c>best.ckpt</c>, why it was kept), or the
        /// optimised model and its quantised layers.
        /// </summary>
        private static (int? Epoch, string What) Describe(string modelPath, nn.Module net)
        {
            switch (ModelLoader.DetectFormat(modelPath))
            {
                case ModelFileFormat.Checkpoint:
                    int epoch = Checkpoint.ReadState(modelPath).Epoch;
                    return (epoch, $"epoch {epoch}" + (Path.GetFileName(modelPath) == Checkpoint.BestFileName ? ", the lowest validation loss" : ""));
                case ModelFileFormat.TorchSharp:
                    var quantized = Quantization.Quantize.QuantizedLayers(net).Select(q => q.Name).ToList();
                    return (null, "the optimised model" + (quantized.Count > 0 ? $", quantised layers {string.Join(", ", quantized)}" : ""));
                default:
                    return (null, "");
            }
        }

        private static readonly JsonSerializerOptions Json = new()
        {
            WriteIndented = true,
            DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
            NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        };
    }

    /// <summary>Averages of precision, recall and F1 over classes.</summary>
    public sealed record Averages(
        [property: JsonPropertyName("precision")] double Precision,
        [property: JsonPropertyName("recall")] double Recall,
        [property: JsonPropertyName("f1")] double F1);

    /// <summary>The result of <c>evaluate</c>, as written in JSON (snake_case; classifier fields absent for regression).</summary>
    public sealed record EvaluationResult
    {
        /// <summary>The model class.</summary>
        [JsonPropertyName("model")] public string Model { get; init; } = "";
        /// <summary>The file the weights came from.</summary>
        [JsonPropertyName("model_file")] public string ModelFile { get; init; } = "";
        /// <summary>The epoch of the checkpoint that was scored; absent for other files.</summary>
        [JsonPropertyName("epoch")] public int? Epoch { get; init; }
        /// <summary>The data file, as an absolute path.</summary>
        [JsonPropertyName("data")] public string Data { get; init; } = "";
        /// <summary>Samples evaluated.</summary>
        [JsonPropertyName("samples")] public long Samples { get; init; }
        /// <summary>The [Train] loss function.</summary>
        [JsonPropertyName("loss_function")] public string LossFunction { get; init; } = "";
        /// <summary>The mean loss over all samples.</summary>
        [JsonPropertyName("loss")] public double Loss { get; init; }
        /// <summary>The fraction classified correctly; classifiers only.</summary>
        [JsonPropertyName("accuracy")] public double? Accuracy { get; init; }
        /// <summary>Counts, rows the true class and columns the predicted one; classifiers only.</summary>
        [JsonPropertyName("confusion_matrix")] public long[][]? ConfusionMatrix { get; init; }
        /// <summary>Precision, recall, F1 and support per class; classifiers only.</summary>
        [JsonPropertyName("per_class")] public List<ClassMetrics>? PerClass { get; init; }
        /// <summary>Unweighted means over classes; classifiers only.</summary>
        [JsonPropertyName("macro_avg")] public Averages? MacroAverage { get; init; }
        /// <summary>Support-weighted means over classes; classifiers only.</summary>
        [JsonPropertyName("weighted_avg")] public Averages? WeightedAverage { get; init; }

        [JsonIgnore] internal string? Table { get; init; }
        [JsonIgnore] internal string ModelDescription { get; init; } = "";

        /// <summary>The human-readable form: a summary line, then the per-class table and the confusion matrix.</summary>
        public string ToText()
        {
            string head = $"{Model} ({ModelFile}{(ModelDescription.Length > 0 ? ", " + ModelDescription : "")}) on {Samples} samples of {Data}: {LossFunction} loss {Loss.ToString("0.0000", CultureInfo.InvariantCulture)}" +
                          (Accuracy is { } a ? $", accuracy {TrainingProgress.Percent(a)}" : "");
            return Table is null ? head : head + Environment.NewLine + Environment.NewLine + Table.TrimEnd();
        }
    }
}
