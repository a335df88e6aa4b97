using System.Text;

namespace ModelDsl.Runtime.Data;

/// <summary>
/// A character-level text corpus for next-character prediction: the sorted set of distinct characters is the
/// vocabulary, and the text is encoded as one int64 tensor of vocabulary indices.
/// </summary>
/// <remarks>
/// Characters are UTF-16 code units (C# <see cref="char"/>), sorted ordinally, as Python's <c>sorted(set(text))</c>
/// does for text inside the Basic Multilingual Plane. Line endings are normalised to '\n' so that a corpus checked out
/// with CRLF endings (\r\n) gives the same vocabulary and ids as one checked out with LF.
/// </remarks>
public sealed class CharCorpus : IDisposable
{
    private readonly Dictionary<char, long> _index;

    private CharCorpus(string vocabulary, Tensor ids)
    {
        Vocabulary = vocabulary;
        Ids = ids.DetachFromDisposeScope();
        _index = new Dictionary<char, long>(vocabulary.Length);
        for (int i = 0; i < vocabulary.Length; i++)
            _index.Add(vocabulary[i], i);
    }

    /// <summary>The distinct characters of the text in ordinal order; a character's id is its index here.</summary>
    public string Vocabulary { get; }

    /// <summary>The number of distinct characters (the embedding and output size of a model on this corpus).</summary>
    public int VocabularySize => Vocabulary.Length;

    /// <summary>The whole text as ids, int64 [Length].</summary>
    public Tensor Ids { get; }

    /// <summary>The number of characters in the text.</summary>
    public long Length => Ids.shape[0];

    /// <summary>Reads a UTF-8 text file (a byte order mark is skipped) and builds the corpus.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist; the message names the full path.</exception>
    /// <exception cref="DataFormatException">The file is empty (<see cref="DataFormatException.Line"/> 0).</exception>
    public static CharCorpus Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string fullPath = Path.GetFullPath(path);
        if (!File.Exists(fullPath))
            throw new FileNotFoundException($"Text file not found: {fullPath}", fullPath);
        string text = File.ReadAllText(fullPath, Encoding.UTF8);
        if (text.Length == 0)
            throw new DataFormatException(fullPath, 0, "the file is empty; a character corpus needs text");
        return FromText(text);
    }

    /// <summary>Builds the corpus from text in memory.</summary>
    /// <exception cref="ArgumentException">The text is empty.</exception>
    public static CharCorpus FromText(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = text.Replace("\r\n", "\n", StringComparison.Ordinal);
        if (text.Length == 0)
            throw new ArgumentException("A character corpus needs a non-empty text.", nameof(text));

        // A 64K table instead of a dictionary: the text may be megabytes, and this loop runs once per character.
        var seen = new bool[char.MaxValue + 1];
        foreach (char c in text)
            seen[c] = true;
        var vocabulary = new StringBuilder();
        var idOf = new long[char.MaxValue + 1];
        for (int c = 0; c <= char.MaxValue; c++)
        {
            if (!seen[c])
                continue;
            idOf[c] = vocabulary.Length;
            vocabulary.Append((char)c);
        }

        var ids = new long[text.Length];
        for (int i = 0; i < text.Length; i++)
            ids[i] = idOf[text[i]];
        return new CharCorpus(vocabulary.ToString(), tensor(ids));
    }

    /// <summary>
    /// Cuts the text into next-character samples: non-overlapping windows of <paramref name="sequenceLength"/>
    /// characters (stride T) as features [M, T], and the same windows shifted one character on as labels [M, T],
    /// both int64. M = (Length - 1) / T, since the last window needs one character after it for its targets; a
    /// shorter remainder at the end is left out.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">T is below 1 or above Length - 1.</exception>
    public TensorDataset Windows(int sequenceLength)
    {
        return WindowsOf(Ids, sequenceLength, length =>
            $"The corpus has {length} characters, so a window (plus the one character after it that its targets need) " +
            $"can be at most {length - 1} long.");
    }

    /// <summary>
    /// Splits the text where the last <paramref name="validationFraction"/> of it begins, as nanoGPT does (the first
    /// 90% trains, the last 10% validates), and cuts each part into windows as <see cref="Windows"/> does. A contiguous
    /// split keeps validation text unseen: no training window overlaps it.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The fraction is outside [0, 1), or a part is too short for one window.</exception>
    public (TensorDataset Train, TensorDataset Validation) SplitWindows(int sequenceLength, double validationFraction)
    {
        if (!(validationFraction >= 0 && validationFraction < 1))
            throw new ArgumentOutOfRangeException(nameof(validationFraction), validationFraction, "The validation fraction must be in [0, 1).");
        long split = (long)Math.Round(Length * (1 - validationFraction));
        var train = WindowsOf(Ids.narrow(0, 0, split), sequenceLength, TooShort("training part", sequenceLength));
        var validation = split == Length
            ? new TensorDataset(torch.empty(0, sequenceLength, dtype: ScalarType.Int64), torch.empty(0, sequenceLength, dtype: ScalarType.Int64))
            : WindowsOf(Ids.narrow(0, split, Length - split), sequenceLength, TooShort("validation part", sequenceLength));
        return (train, validation);
    }

    /// <summary>The message when a part of the text is too short for one window.</summary>
    private static Func<long, string> TooShort(string part, int sequenceLength) => length =>
        $"The {part} of the text has {length} characters, too few for one window of {sequenceLength} (plus the character after it).";

    /// <summary>
    /// <paramref name="ids"/> cut into consecutive windows of <paramref name="sequenceLength"/>, each labelled with the
    /// window one character later; <paramref name="tooShort"/> (of the length) says why there is not one window.
    /// </summary>
    private static TensorDataset WindowsOf(Tensor ids, int sequenceLength, Func<long, string> tooShort)
    {
        if (sequenceLength < 1)
            throw new ArgumentOutOfRangeException(nameof(sequenceLength), sequenceLength, "The sequence length must be at least 1.");
        long length = ids.shape[0];
        if (sequenceLength > length - 1)
            throw new ArgumentOutOfRangeException(nameof(sequenceLength), sequenceLength, tooShort(length));
        long windows = (length - 1) / sequenceLength;
        long used = windows * sequenceLength;
        using var scope = NewDisposeScope();
        // reshape of a narrow is a view of the ids; clone() gives the dataset tensors of its own.
        var features = ids.narrow(0, 0, used).reshape(windows, sequenceLength).clone();
        var labels = ids.narrow(0, 1, used).reshape(windows, sequenceLength).clone();
        return new TensorDataset(features.DetachFromDisposeScope(), labels.DetachFromDisposeScope());
    }

    /// <summary>The ids of <paramref name="text"/> (line endings normalised as in the corpus).</summary>
    /// <exception cref="ArgumentException">The text has a character outside the vocabulary.</exception>
    public long[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = text.Replace("\r\n", "\n", StringComparison.Ordinal);
        var ids = new long[text.Length];
        for (int i = 0; i < text.Length; i++)
        {
            if (!_index.TryGetValue(text[i], out ids[i]))
                throw new ArgumentException($"'{text[i]}' (U+{(int)text[i]:X4}) at index {i} is not in the corpus vocabulary.", nameof(text));
        }
        return ids;
    }

    /// <summary>The text of <paramref name="ids"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is outside 0 .. VocabularySize - 1.</exception>
    public string Decode(ReadOnlySpan<long> ids)
    {
        var text = new StringBuilder(ids.Length);
        foreach (long id in ids)
        {
            if (id < 0 || id >= Vocabulary.Length)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"Ids run from 0 to {Vocabulary.Length - 1}.");
            text.Append(Vocabulary[(int)id]);
        }
        return text.ToString();
    }

    /// <summary>Releases the id tensor.</summary>
    public void Dispose() => Ids.Dispose();
}
