namespace ModelDsl.Runtime.Quantization;

/// <summary>
/// Reads the table of contents of a file in TorchSharp's <c>Module.save</c> format (an entry count, then for each
/// entry its name, dtype, shape and raw bytes, lengths as unsigned LEB128), so that a quantised file can be told
/// from a float one and checked against a model before any tensor is overwritten.
/// </summary>
internal static class StateDictFile
{
    internal sealed record Entry(string Key, ScalarType DType, long[] Shape, long? ScalarValue)
    {
        /// <summary>The <c>quantize_mode</c> buffer of a <see cref="DynamicQuantizedLinear"/>.</summary>
        public bool IsModeEntry => (Key == "quantize_mode" || Key.EndsWith(".quantize_mode", StringComparison.Ordinal))
            && DType == ScalarType.Int64 && Shape.Length == 0 && ScalarValue is >= 0 and <= 2;

        /// <summary>The <c>quantize_mode</c> buffer of a <see cref="StaticQuantizedLayer"/>.</summary>
        public bool IsStaticModeEntry => Key.EndsWith(".quantize_mode", StringComparison.Ordinal) && DType == ScalarType.Int64 && Shape.Length == 0
            && ScalarValue == (long)QuantizeMode.StaticInt8;

        public QuantizeMode Mode => (QuantizeMode)(ScalarValue ?? -1);
    }

    public static IReadOnlyList<Entry> Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
            throw new FileNotFoundException($"No model file at '{path}'.", path);
        byte[] bytes = File.ReadAllBytes(path);
        List<Inference.TorchSharpFormat.Entry> entries;
        try
        {
            // One parser for the format, which checks every length against the bytes there (docs/inference.md).
            entries = Inference.TorchSharpFormat.ReadEntries(bytes);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"'{path}' is not a TorchSharp model file: {e.Message}.", e);
        }
        var result = new List<Entry>(entries.Count);
        foreach (var e in entries)
        {
            long? scalar = e.DType == ScalarType.Int64 && e.Length == sizeof(long) ? BitConverter.ToInt64(bytes, e.Offset) : null;
            result.Add(new Entry(e.Name, e.DType, e.Shape, scalar));
        }
        return result;
    }
}
