using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using ModelDsl.Runtime.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>
    /// Reads the inputs of a prediction run: CSV rows of features, in the training data's layout, with or without
    /// the label column (a file of training data can be predicted as it is). Errors name the file and the line.
    /// </summary>
    internal static class FeatureCsv
    {
        /// <summary>Features [N, ..sampleShape] (float32), and the labels as text when the rows carry them.</summary>
        public static (Tensor Features, string[]? Labels) Load(string path, long[] sampleShape)
        {
            string full = Path.GetFullPath(path);
            if (!File.Exists(full)) throw new FileNotFoundException($"Data file not found: {full}", full);
            long perRow = sampleShape.Aggregate(1L, (a, b) => a * b);
            var values = new List<float>();
            var labels = new List<string>();
            bool? hasLabels = null;
            int lineNumber = 0, rows = 0, blankAt = 0;
            foreach (var raw in File.ReadLines(full))
            {
                lineNumber++;
                var line = raw.TrimEnd('\r');
                if (string.IsNullOrWhiteSpace(line))
                {
                    if (blankAt == 0) blankAt = lineNumber;
                    continue;
                }
                if (blankAt != 0) throw new DataFormatException(full, blankAt, "blank line between data lines (blank lines are allowed only at the end)");
                var cells = line.Split(',');
                hasLabels ??= cells.Length == perRow + 1 ? true
                    : cells.Length == perRow ? false
                    : throw new DataFormatException(full, lineNumber, $"the model takes {perRow} feature values per row (optionally followed by the label), but the row has {cells.Length}");
                if (cells.Length != perRow + (hasLabels.Value ? 1 : 0))
                    throw new DataFormatException(full, lineNumber, $"expected {perRow + (hasLabels.Value ? 1 : 0)} values like the first row, found {cells.Length}");
                for (int i = 0; i < perRow; i++)
                {
                    var token = cells[i].Trim();
                    if (!float.TryParse(token, NumberStyles.Float, CultureInfo.InvariantCulture, out float v) || !float.IsFinite(v))
                        throw new DataFormatException(full, lineNumber, token.Length == 0 ? "empty value where a number is expected" : $"'{(token.Length > 32 ? token[..32] + "..." : token)}' is not a number");
                    values.Add(v);
                }
                if (hasLabels.Value) labels.Add(cells[^1].Trim());
                rows++;
            }
            if (rows == 0) throw new DataFormatException(full, 0, "the file contains no data rows");
            var shape = new long[sampleShape.Length + 1];
            shape[0] = rows;
            sampleShape.CopyTo(shape, 1);
            return (torch.tensor(values.ToArray(), shape), hasLabels == true ? labels.ToArray() : null);
        }
    }
}
