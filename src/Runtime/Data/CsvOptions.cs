namespace ModelDsl.Runtime.Data;

/// <summary>
/// How a CSV data file is laid out beyond its numbers: whether its first row names the columns, and which column
/// holds the label. <c>[Train(Header = ..., LabelColumn = ...)]</c> and <c>--header</c> / <c>--label-column</c> set it.
/// </summary>
public sealed record CsvOptions
{
    /// <summary>No header declared (one is detected) and the label in the last column.</summary>
    public static CsvOptions Default { get; } = new();

    /// <summary>
    /// True: the first row is a header row. False: it is data, never taken as a header. Null (the default): a header
    /// row is detected — a first row in which no value is a number, followed by a row of numbers — and assumed when
    /// <see cref="LabelColumn"/> is set.
    /// </summary>
    public bool? Header { get; init; }

    /// <summary>
    /// The name of the label column in the header row (the other columns are the features, in file order); null
    /// or empty: the last column. A named label column implies a header row.
    /// </summary>
    public string? LabelColumn { get; init; }
}
