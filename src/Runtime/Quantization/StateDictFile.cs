using System;
using System.Collections.Generic;
using System.IO;
using TorchSharp;
using static TorchSharp.torch;

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

        public QuantizeMode Mode => (QuantizeMode)(ScalarValue ?? -1);
    }

    public static IReadOnlyList<Entry> Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
            throw new FileNotFoundException($"No model file at '{path}'.", path);
        using var stream = File.OpenRead(path);
        using var reader = new BinaryReader(stream);
        try
        {
            long count = Decode(reader);
            if (count < 0 || count > 1_000_000)
                throw new InvalidDataException($"'{path}' is not a TorchSharp model file (it claims {count} entries).");
            var entries = new List<Entry>((int)count);
            for (long i = 0; i < count; i++)
            {
                string key = reader.ReadString();
                var dtype = (ScalarType)Decode(reader);
                long rank = Decode(reader);
                if (rank > 64)
                    throw new InvalidDataException($"'{path}' is not a TorchSharp model file (entry '{key}' has rank {rank}).");
                var shape = new long[rank];
                long elements = 1;
                for (int d = 0; d < rank; d++)
                {
                    shape[d] = Decode(reader);
                    elements *= shape[d];
                }
                long bytes = elements * ElementSize(dtype, path, key);
                long? scalar = null;
                if (dtype == ScalarType.Int64 && elements == 1)
                    scalar = reader.ReadInt64();
                else
                    stream.Seek(bytes, SeekOrigin.Current);
                if (stream.Position > stream.Length)
                    throw new InvalidDataException($"'{path}' is truncated (entry '{key}').");
                entries.Add(new Entry(key, dtype, shape, scalar));
            }
            return entries;
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"'{path}' is truncated or is not a TorchSharp model file.");
        }
    }

    // TorchSharp's LEB128Codec: unsigned, seven bits per byte, low group first.
    private static long Decode(BinaryReader reader)
    {
        long value = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            byte b = reader.ReadByte();
            value |= (long)(b & 0x7f) << shift;
            if ((b & 0x80) == 0)
                return value;
        }
        throw new InvalidDataException("A length in the file is not valid LEB128.");
    }

    private static long ElementSize(ScalarType dtype, string path, string key) => dtype switch
    {
        ScalarType.Byte or ScalarType.Int8 or ScalarType.Bool => 1,
        ScalarType.Int16 or ScalarType.Float16 or ScalarType.BFloat16 => 2,
        ScalarType.Int32 or ScalarType.Float32 => 4,
        ScalarType.Int64 or ScalarType.Float64 or ScalarType.ComplexFloat32 => 8,
        ScalarType.ComplexFloat64 => 16,
        _ => throw new InvalidDataException($"'{path}': entry '{key}' has an unsupported element type ({(int)dtype})."),
    };
}
