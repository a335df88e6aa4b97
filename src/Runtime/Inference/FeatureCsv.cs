using System.Globalization;
using ModelDsl.Runtime.Data;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>
    /// Reads the inputs of a prediction run: CSV rows of features, in the training data's layout, with or without
    /// the label column (a file of training data can be predicted as it is), and with a header row
    /// declared or detected as the training reader does. Errors name the file, the line and the column.
    /// </summary>
    internal static class FeatureCsv
    {
        /// <summary>
        /// Features [N, ..sampleShape] (float32), and the labels as text when the rows carry them: the column
        /// <see cref="CsvOptions.LabelColumn"/> names when the header row has it, else a last column beyond the features.
        /// </summary>
        public static (Tensor Features, string[]? Labels) Load(string path, long[] sampleShape, CsvOptions? options = null)
        {
            string full = Path.GetFullPath(path);
            if (!File.Exists(full)) throw new FileNotFoundException($"Data file not found: {full}", full);
            var header = CsvHeader.Read(full, File.ReadLines(full), options ?? CsvOptions.Default, labelRequired: false);
            long perRow = sampleShape.Aggregate(1L, (a, b) => a * b);
            var values = new List<float>();
            var labels = new List<string>();
            bool? hasLabels = header.LabelIndex >= 0 ? true : header.NamedLabelAbsent ? false : null;
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
                // The header row, when there is one, fixes the layout as the first data row does otherwise.
                hasLabels ??= cells.Length == perRow + 1 ? true
                    : cells.Length == perRow ? false
                    : throw new DataFormatException(full, lineNumber, $"the model takes {perRow} feature values per row (optionally followed by the label), but the {(lineNumber == header.Line ? "header row names" : "row has")} {cells.Length}");
                if (cells.Length != perRow + (hasLabels.Value ? 1 : 0))
                    throw new DataFormatException(full, lineNumber, $"expected {perRow + (hasLabels.Value ? 1 : 0)} values like the {(header.Line > 0 ? "header row" : "first row")}, found {cells.Length}");
                if (lineNumber == header.Line) continue;
                int labelAt = !hasLabels.Value ? -1 : header.LabelIndex >= 0 ? header.LabelIndex : cells.Length - 1;
                for (int i = 0; i < cells.Length; i++)
                {
                    if (i == labelAt) continue;
                    var token = cells[i].AsSpan().Trim();
                    if (!float.TryParse(token, NumberStyles.Float, CultureInfo.InvariantCulture, out float v) || !float.IsFinite(v))
                        throw header.NotANumber(lineNumber, i, token);
                    values.Add(v);
                }
                if (labelAt >= 0) labels.Add(cells[labelAt].Trim());
                rows++;
            }
            if (rows == 0) throw new DataFormatException(full, 0, header.Line > 0 ? $"the file contains no data rows (line {header.Line} is its header row)" : "the file contains no data rows");
            var shape = new long[sampleShape.Length + 1];
            shape[0] = rows;
            sampleShape.CopyTo(shape, 1);
            return (torch.tensor(values.ToArray(), shape), hasLabels == true ? labels.ToArray() : null);
        }
    }
}
