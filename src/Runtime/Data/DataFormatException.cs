namespace ModelDsl.Runtime.Data;

/// <summary>
/// A data file that cannot be read as the expected format. The message starts with <c>path:line:</c> (the way
/// compilers report errors, so editors and terminals can jump to the place) followed by <see cref="Reason"/>.
/// </summary>
/// <remarks>
/// A missing file is not reported with this exception but with a <see cref="System.IO.FileNotFoundException"/>
/// whose message names the full path: callers that already handle I/O failures keep handling that case.
/// </remarks>
public sealed class DataFormatException : Exception
{
    /// <summary>Creates the exception for a problem at <paramref name="line"/> of <paramref name="path"/>.</summary>
    /// <param name="path">The full path of the file.</param>
    /// <param name="line">The 1-based line, or 0 when the problem concerns the whole file.</param>
    /// <param name="reason">What is wrong, without the location.</param>
    public DataFormatException(string path, int line, string reason)
        : base(line > 0 ? $"{path}:{line}: {reason}" : $"{path}: {reason}")
    {
        Path = path;
        Line = line;
        Reason = reason;
    }

    /// <summary>
    /// Creates the exception for a problem in one value: <c>path:line: column 3 ('t2'): reason</c>, the column 1-based
    /// and its name when the file has a header row.
    /// </summary>
    /// <param name="path">The full path of the file.</param>
    /// <param name="line">The 1-based line.</param>
    /// <param name="column">The 1-based column.</param>
    /// <param name="columnName">The column's name in the header row, or null.</param>
    /// <param name="reason">What is wrong, without the location.</param>
    public DataFormatException(string path, int line, int column, string? columnName, string reason)
        : this(path, line, $"column {column}{(columnName is null ? "" : $" ('{columnName}')")}: {reason}")
    {
        Column = column;
        Reason = reason;
    }

    /// <summary>The full path of the file.</summary>
    public string Path { get; }

    /// <summary>The 1-based column of the problem, or 0 when it concerns a whole line or file.</summary>
    public int Column { get; }

    /// <summary>The 1-based line of the problem, or 0 when it concerns the whole file (for example, an empty file).</summary>
    public int Line { get; }

    /// <summary>What is wrong, without the location.</summary>
    public string Reason { get; }
}
