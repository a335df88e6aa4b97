using System.Globalization;
using System.Text;
using System.Text.Json.Serialization;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>Precision, recall and F1 of one class, as scikit-learn's classification_report defines them.</summary>
    public sealed record ClassMetrics
    {
        /// <summary>The class index.</summary>
        [JsonPropertyName("class")] public int Class { get; init; }
        /// <summary>Of the samples predicted as this class, the fraction that are; 0 when none was predicted.</summary>
        [JsonPropertyName("precision")] public double Precision { get; init; }
        /// <summary>Of the samples of this class, the fraction predicted as it; 0 when there are none.</summary>
        [JsonPropertyName("recall")] public double Recall { get; init; }
        /// <summary>The harmonic mean of precision and recall; 0 when both are 0.</summary>
        [JsonPropertyName("f1")] public double F1 { get; init; }
        /// <summary>The number of samples of this class.</summary>
        [JsonPropertyName("support")] public long Support { get; init; }
    }

    /// <summary>
    /// A confusion matrix and what follows from it. Rows are the true classes and columns the predicted ones
    /// (scikit-learn's convention); averages are macro (unweighted over classes) and weighted by support.
    /// </summary>
    public sealed class ClassificationMetrics
    {
        /// <summary>Builds the metrics of <paramref name="classes"/> classes from true and predicted class indices.</summary>
        public ClassificationMetrics(int classes, IReadOnlyList<long> actual, IReadOnlyList<long> predicted)
        {
            if (classes < 1) throw new ArgumentOutOfRangeException(nameof(classes), classes, "at least one class");
            if (actual.Count != predicted.Count) throw new ArgumentException($"{actual.Count} labels but {predicted.Count} predictions");
            Confusion = new long[classes][];
            for (int i = 0; i < classes; i++) Confusion[i] = new long[classes];
            for (int n = 0; n < actual.Count; n++)
            {
                if (actual[n] < 0 || actual[n] >= classes || predicted[n] < 0 || predicted[n] >= classes)
                    throw new ArgumentOutOfRangeException(nameof(actual), $"sample {n}: class {actual[n]} or prediction {predicted[n]} is outside 0..{classes - 1}");
                Confusion[actual[n]][predicted[n]]++;
            }
            Samples = actual.Count;
            PerClass = Enumerable.Range(0, classes).Select(c =>
            {
                long tp = Confusion[c][c];
                long support = Confusion[c].Sum();
                long predictedAs = Confusion.Sum(row => row[c]);
                double precision = predictedAs == 0 ? 0 : (double)tp / predictedAs;
                double recall = support == 0 ? 0 : (double)tp / support;
                double f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall);
                return new ClassMetrics { Class = c, Precision = precision, Recall = recall, F1 = f1, Support = support };
            }).ToArray();
            Accuracy = Samples == 0 ? 0 : (double)Enumerable.Range(0, classes).Sum(c => Confusion[c][c]) / Samples;
        }

        /// <summary>Counts: <c>Confusion[actual][predicted]</c>.</summary>
        public long[][] Confusion { get; }
        /// <summary>The number of samples.</summary>
        public long Samples { get; }
        /// <summary>The fraction of samples predicted correctly.</summary>
        public double Accuracy { get; }
        /// <summary>Precision, recall, F1 and support per class.</summary>
        public IReadOnlyList<ClassMetrics> PerClass { get; }

        /// <summary>The unweighted mean over classes of precision, recall and F1.</summary>
        public (double Precision, double Recall, double F1) MacroAverage =>
            (PerClass.Average(c => c.Precision), PerClass.Average(c => c.Recall), PerClass.Average(c => c.F1));

        /// <summary>The support-weighted mean over classes of precision, recall and F1.</summary>
        public (double Precision, double Recall, double F1) WeightedAverage
        {
            get
            {
                double total = Math.Max(1, PerClass.Sum(c => c.Support));
                return (PerClass.Sum(c => c.Precision * c.Support) / total, PerClass.Sum(c => c.Recall * c.Support) / total, PerClass.Sum(c => c.F1 * c.Support) / total);
            }
        }

        /// <summary>The per-class table and the confusion matrix as fixed-width text.</summary>
        public string ToTable()
        {
            var sb = new StringBuilder();
            sb.AppendLine("class  precision  recall  f1-score  support");
            foreach (var c in PerClass)
                sb.AppendLine($"{c.Class,5}  {F(c.Precision),9}  {F(c.Recall),6}  {F(c.F1),8}  {c.Support,7}");
            var macro = MacroAverage;
            var weighted = WeightedAverage;
            sb.AppendLine($"{"macro",5}  {F(macro.Precision),9}  {F(macro.Recall),6}  {F(macro.F1),8}  {Samples,7}");
            sb.AppendLine($"{"wtd",5}  {F(weighted.Precision),9}  {F(weighted.Recall),6}  {F(weighted.F1),8}  {Samples,7}");
            sb.AppendLine();
            int width = Math.Max(4, Confusion.SelectMany(r => r).DefaultIfEmpty(0).Max().ToString(CultureInfo.InvariantCulture).Length + 1);
            sb.AppendLine("confusion matrix (rows: true class, columns: predicted)");
            sb.Append("     ");
            for (int j = 0; j < Confusion.Length; j++) sb.Append(j.ToString(CultureInfo.InvariantCulture).PadLeft(width));
            sb.AppendLine();
            for (int i = 0; i < Confusion.Length; i++)
            {
                sb.Append(i.ToString(CultureInfo.InvariantCulture).PadLeft(5));
                foreach (var count in Confusion[i]) sb.Append(count.ToString(CultureInfo.InvariantCulture).PadLeft(width));
                sb.AppendLine();
            }
            return sb.ToString();
        }

        private static string F(double v) => v.ToString("0.0000", CultureInfo.InvariantCulture);
    }
}
