using System.Globalization;

namespace ModelDsl.Runtime.Data;

/// <summary>
/// The header row of a CSV data file, if it has one, and where its label column is: decided once from the first two
/// rows by <see cref="Read"/>, for the training reader (<see cref="CsvDataset"/>) and the inference commands' reader
/// alike. Also the one place that words a bad value (file, line, column and the column's name).
/// </summary>
internal sealed class CsvHeader
{
    // Tokens quoted in error messages are cut to this length: a garbage line must not produce a garbage message.
    private const int MaxQuotedToken = 32;

    private CsvHeader(string path) => Path = path;

    /// <summary>The file, for messages.</summary>
    public string Path { get; }

    /// <summary>The header row's line number, 0 when the file has none (every non-blank line is data).</summary>
    public int Line { get; private init; }

    /// <summary>The column names of the header row, or null.</summary>
    public string[]? Names { get; private init; }

    /// <summary>The 0-based index of the named label column; -1 when no label column is named (the last column is the label).</summary>
    public int LabelIndex { get; private init; } = -1;

    /// <summary>A label column is named but this file's header lacks it (allowed where labels are optional: predict).</summary>
    public bool NamedLabelAbsent { get; private init; }

    /// <summary>The first data line, and why it was not taken for a header row when it holds text (added to its error).</summary>
    private int FirstLine { get; init; }
    private string? FirstRowNote { get; init; }

    /// <summary>
    /// Decides the layout from the first two non-blank lines of <paramref name="lines"/>. Throws a
    /// <see cref="DataFormatException"/> when a named label column cannot be found (unless
    /// <paramref name="labelRequired"/> is false and the file simply lacks it).
    /// </summary>
    public static CsvHeader Read(string path, IEnumerable<string> lines, CsvOptions options, bool labelRequired)
    {
        string? first = null, second = null;
        int firstLine = 0, number = 0;
        foreach (var raw in lines)
        {
            number++;
            if (string.IsNullOrWhiteSpace(raw)) continue;
            if (first is null) (first, firstLine) = (raw.TrimEnd('\r'), number);
            else
            {
                second = raw.TrimEnd('\r');
                break;
            }
        }
        string? label = string.IsNullOrEmpty(options.LabelColumn) ? null : options.LabelColumn;
        if (first is null) return new CsvHeader(path);

        string[] cells = first.Split(',');
        bool anyNumber = cells.Any(c => IsNumber(c.AsSpan().Trim()));
        // A named label column means a header row. Otherwise a first row without a single number, followed by a row
        // of numbers (or by nothing), names the columns.
        bool header = options.Header ?? (label is not null || !anyNumber && (second is null || second.Split(',').All(c => IsNumber(c.AsSpan().Trim()))));
        bool anyText = cells.Any(c => c.Trim().Length > 0 && !IsNumber(c.AsSpan().Trim()));
        string? note = header || !anyText ? null
            : options.Header == false ? $"line {firstLine} is read as data because Header = false declares no header row"
            : anyNumber ? $"line {firstLine} mixes text and numbers, so it was not taken for a header row; if it is one, declare [Train(Header = true)] or pass --header"
            : $"line {firstLine} holds only text but was not taken for a header row because the next row is not all numbers either; if it is one, declare [Train(Header = true)] or pass --header";

        if (!header)
        {
            if (label is not null)
                throw new DataFormatException(path, firstLine,
                    $"the label column is named '{Quote(label)}' (LabelColumn or --label-column), which needs a header row, but Header = false declares that line {firstLine} is data");
            return new CsvHeader(path) { FirstLine = firstLine, FirstRowNote = note };
        }

        string[] names = cells.Select(c => c.Trim().Trim('"').Trim()).ToArray();
        int index = label is null ? -1 : Array.IndexOf(names, label);
        if (label is not null && index < 0 && labelRequired)
            throw new DataFormatException(path, firstLine, $"the header row has no column named '{Quote(label)}' (the label column); its columns are {Preview(names)}");
        return new CsvHeader(path) { Line = firstLine, Names = names, LabelIndex = index, NamedLabelAbsent = label is not null && index < 0, FirstLine = firstLine };
    }

    /// <summary>The name of the 0-based column, when the header row names it.</summary>
    public string? NameOf(int column) => Names is not null && column < Names.Length && Names[column].Length > 0 ? Quote(Names[column]) : null;

    /// <summary><c>path:line: column 3 ('t2'): 'abc' is not a number</c>, for the 0-based <paramref name="column"/>.</summary>
    public DataFormatException NotANumber(int line, int column, ReadOnlySpan<char> token) =>
        Error(line, column, token.IsEmpty ? "empty value where a number is expected" : $"'{Quote(token)}' is not a number");

    /// <summary>A problem with the value at <paramref name="line"/> and the 0-based <paramref name="column"/>.</summary>
    public DataFormatException Error(int line, int column, string reason) =>
        new(Path, line, column + 1, NameOf(column), line == FirstLine && FirstRowNote is not null ? $"{reason} ({FirstRowNote})" : reason);

    /// <summary>Whether the trimmed token is a finite number in the invariant culture.</summary>
    public static bool IsNumber(ReadOnlySpan<char> token) =>
        float.TryParse(token, NumberStyles.Float, CultureInfo.InvariantCulture, out float value) && float.IsFinite(value);

    /// <summary>The token as messages quote it: at most 32 characters.</summary>
    public static string Quote(ReadOnlySpan<char> token) =>
        token.Length <= MaxQuotedToken ? token.ToString() : string.Concat(token[..MaxQuotedToken], "...");

    private static string Preview(string[] names) =>
        string.Join(", ", names.Take(8).Select(n => $"'{Quote(n)}'")) + (names.Length > 8 ? $", ... ({names.Length} in all)" : "");
}
