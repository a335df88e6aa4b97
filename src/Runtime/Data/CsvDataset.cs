using System.Globalization;

namespace ModelDsl.Runtime.Data;

/// <summary>
/// Loads numeric CSV files in the UCI style: comma separated, one sample per line, the last column the label and all
/// other columns the features. A header row naming the columns is allowed (declared, or detected: a first row
/// without a single number followed by a row of numbers), and with one the label may be any column, named by
/// <see cref="CsvOptions.LabelColumn"/>.
/// </summary>
public static class CsvDataset
{
    /// <summary>
    /// Reads <paramref name="path"/> into a <see cref="TensorDataset"/> with float32 features of shape
    /// [N, ..<paramref name="sampleShape"/>] and labels of shape [N].
    /// </summary>
    /// <param name="path">The CSV file (UTF-8). Numbers use the invariant culture ('.' as decimal point); blank lines
    /// are allowed at the end of the file only.</param>
    /// <param name="sampleShape">The shape of one sample; the product must equal the number of feature columns
    /// (for example [1, 8, 8] for 64 columns read as one-channel 8x8 images). Empty means one scalar per sample.</param>
    /// <param name="labelKind">Whether the labels are class indices (int64) or float32 targets.</param>
    /// <param name="options">The header row and the label column; null: <see cref="CsvOptions.Default"/>.</param>
    /// <exception cref="FileNotFoundException">The file does not exist; the message names the full path.</exception>
    /// <exception cref="DataFormatException">The content is malformed; the message names the file, the line and,
    /// for a bad value, the column (with its name from the header row).</exception>
    /// <exception cref="ArgumentException">The sample shape has a dimension below 1.</exception>
    public static TensorDataset Load(string path, long[] sampleShape, LabelKind labelKind, CsvOptions? options = null) =>
        Load(path, sampleShape, labelKind, options, out _);

    /// <summary>
    /// <see cref="Load(string, long[], LabelKind, CsvOptions?)"/>, also saying how many header rows preceded the data
    /// (0 or 1): sample r is then line r + 1 + <paramref name="headerRows"/> of the file.
    /// </summary>
    public static TensorDataset Load(string path, long[] sampleShape, LabelKind labelKind, CsvOptions? options, out int headerRows)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(sampleShape);
        if (sampleShape.Any(d => d < 1))
            throw new ArgumentException($"Every dimension of the sample shape must be at least 1, not [{Join(sampleShape)}].", nameof(sampleShape));
        if (!Enum.IsDefined(labelKind))
            throw new ArgumentOutOfRangeException(nameof(labelKind), labelKind, "Unknown label kind.");

        string fullPath = Path.GetFullPath(path);
        if (!File.Exists(fullPath))
            throw new FileNotFoundException($"Data file not found: {fullPath}", fullPath);

        long featuresPerRow = sampleShape.Aggregate(1L, (a, b) => a * b);
        string text = File.ReadAllText(fullPath);
        var header = CsvHeader.Read(fullPath, Lines(text), options ?? CsvOptions.Default, labelRequired: true);
        headerRows = header.Line > 0 ? 1 : 0;
        var (features, labels, rows) = Parse(text, header, sampleShape, featuresPerRow, labelKind);

        using var scope = NewDisposeScope();
        var x = tensor(features, Prepend(rows, sampleShape));
        var y = labelKind == LabelKind.ClassIndex
            ? tensor(labels.Longs, new[] { rows })
            : tensor(labels.Floats, new[] { rows });
        return new TensorDataset(x, y);
    }

    /// <summary>
    /// Finds the first sample whose class label does not index one of <paramref name="classes"/> classes (what
    /// cross-entropy would otherwise fail on deep inside libtorch) and reports it at its line of the file.
    /// </summary>
    /// <param name="data">A dataset loaded by <see cref="Load(string, long[], LabelKind, CsvOptions?)"/> with <see cref="LabelKind.ClassIndex"/> labels.</param>
    /// <param name="classes">How many classes the model outputs; labels must be in 0..classes-1.</param>
    /// <param name="path">The file <paramref name="data"/> was loaded from, as the message should name it.</param>
    /// <param name="modelName">The model, for the message; null says "the model".</param>
    /// <param name="headerRows">Header rows before the data (what <see cref="Load(string, long[], LabelKind, CsvOptions?, out int)"/> says).</param>
    /// <returns>
    /// Null when every label fits; otherwise the error for the first offending row, <c>path:line: class label 12 is out
    /// of range: ...</c>. <see cref="Load(string, long[], LabelKind, CsvOptions?)"/> reads one sample per line with blank
    /// lines allowed only at the end, so sample r is line r + 1 + <paramref name="headerRows"/>.
    /// </returns>
    /// <exception cref="ArgumentException">The labels are not a vector of int64 class indices, or classes is below 1.</exception>
    public static DataFormatException? FindLabelOutOfRange(TensorDataset data, long classes, string path, string? modelName = null, int headerRows = 0)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(path);
        ArgumentOutOfRangeException.ThrowIfLessThan(classes, 1);
        if (data.Labels.dim() != 1 || data.Labels.dtype != ScalarType.Int64)
            throw new ArgumentException($"Class labels must be a vector of int64, not {data.Labels.dtype} of rank {data.Labels.dim()}.", nameof(data));

        using var scope = NewDisposeScope();
        var outside = data.Labels.lt(0).logical_or(data.Labels.ge(classes));
        if (!outside.any().item<bool>())
            return null;
        // argmax returns the first maximum: the first offending row.
        long row = outside.to_type(ScalarType.Int32).argmax().item<long>();
        long label = data.Labels[row].item<long>();
        int line = row + 1 + headerRows > int.MaxValue ? 0 : (int)(row + 1 + headerRows);
        return new DataFormatException(path, line,
            $"class label {label} is out of range: {modelName ?? "the model"} outputs {classes} classes (labels 0..{classes - 1})");
    }

    // One pass over the text with spans: no per-line strings, no per-value allocations. The arrays are sized from the
    // line count up front and only shrunk (once) when the file ends with blank lines.
    private static (float[] Features, Labels Labels, long Rows) Parse(
        string text, CsvHeader header, long[] sampleShape, long featuresPerRow, LabelKind labelKind)
    {
        string path = header.Path;
        if (header.Names is { } names && names.Length != featuresPerRow + 1)
            throw new DataFormatException(path, header.Line,
                $"the header row names {names.Length} columns, but sample shape [{Join(sampleShape)}] needs {featuresPerRow} feature columns and the label, {featuresPerRow + 1} in all");
        ReadOnlySpan<char> rest = text;
        long maxRows = rest.Count('\n') + 1;
        float[]? features = null;
        var labels = new Labels(labelKind);
        long rows = 0;
        int lineNumber = 0;
        int firstBlankLine = 0; // the first blank line not yet followed by data; data after it is an error

        while (!rest.IsEmpty)
        {
            int end = rest.IndexOf('\n');
            var line = end < 0 ? rest : rest[..end];
            rest = end < 0 ? ReadOnlySpan<char>.Empty : rest[(end + 1)..];
            lineNumber++;
            line = line.TrimEnd('\r');

            if (line.IsWhiteSpace())
            {
                if (firstBlankLine == 0)
                    firstBlankLine = lineNumber;
                continue;
            }
            if (firstBlankLine != 0)
                throw new DataFormatException(path, firstBlankLine, "blank line between data lines (blank lines are allowed only at the end)");
            if (lineNumber == header.Line)
                continue;

            int values = line.Count(',') + 1;
            if (features is null)
            {
                // The first data line fixes the layout; check it against the sample shape once, with both counts.
                if (values - 1 != featuresPerRow)
                    throw new DataFormatException(path, lineNumber,
                        $"sample shape [{Join(sampleShape)}] needs {featuresPerRow} feature values per row, " +
                        $"but the row has {values - 1} (plus the label column, {values} values in all)");
                long capacity = checked(maxRows * featuresPerRow);
                if (capacity > Array.MaxLength)
                    throw new DataFormatException(path, 0, $"{maxRows} rows of {featuresPerRow} features do not fit in one array");
                features = new float[capacity];
                labels.Allocate(maxRows);
            }
            else if (values != featuresPerRow + 1)
            {
                throw new DataFormatException(path, lineNumber, $"expected {featuresPerRow + 1} values, found {values}");
            }

            // The label is the named column, else the last; the other columns are the features in file order.
            int labelAt = header.LabelIndex >= 0 ? header.LabelIndex : values - 1;
            long offset = rows * featuresPerRow;
            for (int column = 0; column < values; column++)
            {
                int comma = line.IndexOf(',');
                var token = (comma < 0 ? line : line[..comma]).Trim();
                line = comma < 0 ? ReadOnlySpan<char>.Empty : line[(comma + 1)..];
                if (column == labelAt)
                {
                    labels.Set(rows, token, header, lineNumber, column);
                    continue;
                }
                if (!float.TryParse(token, NumberStyles.Float, CultureInfo.InvariantCulture, out float value) || !float.IsFinite(value))
                    throw header.NotANumber(lineNumber, column, token);
                features[offset++] = value;
            }
            rows++;
        }

        if (features is null)
            throw new DataFormatException(path, 0, header.Line > 0 ? $"the file contains no data rows (line {header.Line} is its header row)" : "the file contains no data rows");
        if (rows < maxRows)
        {
            Array.Resize(ref features, (int)(rows * featuresPerRow));
            labels.Shrink(rows);
        }
        return (features, labels, rows);
    }

    private static IEnumerable<string> Lines(string text)
    {
        using var reader = new StringReader(text);
        while (reader.ReadLine() is { } line)
            yield return line;
    }

    private static long[] Prepend(long first, long[] rest)
    {
        var shape = new long[rest.Length + 1];
        shape[0] = first;
        rest.CopyTo(shape, 1);
        return shape;
    }

    private static string Join(long[] values) => string.Join(", ", values);

    // The label column, in the array type its kind ends up as (int64 class indices or float32 targets).
    private sealed class Labels(LabelKind kind)
    {
        public long[] Longs = Array.Empty<long>();
        public float[] Floats = Array.Empty<float>();

        public void Allocate(long rows)
        {
            if (kind == LabelKind.ClassIndex)
                Longs = new long[rows];
            else
                Floats = new float[rows];
        }

        public void Shrink(long rows)
        {
            if (kind == LabelKind.ClassIndex)
                Array.Resize(ref Longs, (int)rows);
            else
                Array.Resize(ref Floats, (int)rows);
        }

        public void Set(long row, ReadOnlySpan<char> token, CsvHeader header, int line, int column)
        {
            if (!double.TryParse(token, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) || !double.IsFinite(value))
                throw header.NotANumber(line, column, token);
            if (kind == LabelKind.Float)
            {
                Floats[row] = (float)value;
                return;
            }
            // 2^53: beyond it a double no longer tells neighbouring whole numbers apart.
            if (value < 0 || value != Math.Floor(value) || value > 9007199254740992d)
                throw header.Error(line, column, $"class label '{CsvHeader.Quote(token)}' is not a whole non-negative number");
            Longs[row] = (long)value;
        }
    }
}
