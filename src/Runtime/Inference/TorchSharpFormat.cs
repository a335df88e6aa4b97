using System.Text;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>
    /// TorchSharp's own state-dict format, as <c>Module.save</c> writes it: the entry count, then per entry its name
    /// (a .NET <c>BinaryWriter</c> string), its dtype, rank and sizes (unsigned LEB128) and its raw little-endian
    /// bytes. The optimisation passes write the optimised model (<c>optimized.bin</c>) this way, and a checkpoint's
    /// model section is one.
    /// </summary>
    /// <remarks>
    /// The reader checks every length against the bytes that are there before it allocates anything, so a
    /// truncated or altered file is an <see cref="InvalidDataException"/> (a <see cref="ModelFileException"/> from
    /// <see cref="Load"/>), never an allocation the file cannot back.
    /// </remarks>
    internal static class TorchSharpFormat
    {
        /// <summary>More entries than any model has; a count beyond it is not a state dict.</summary>
        public const int MaxEntries = 1_000_000;

        /// <summary>Beyond libtorch's own limit of dimensions.</summary>
        public const int MaxRank = 64;

        /// <summary>One tensor of the file: where its bytes are, relative to the start of what was parsed.</summary>
        public sealed record Entry(string Name, ScalarType DType, long[] Shape, int Offset, int Length);

        /// <summary>
        /// Parses the entries of a state dict that fills <paramref name="data"/> exactly. Throws
        /// <see cref="InvalidDataException"/> saying what does not fit.
        /// </summary>
        public static List<Entry> ReadEntries(ReadOnlySpan<byte> data)
        {
            int position = 0;
            long count = Leb128(data, ref position);
            if (count < 1 || count > MaxEntries) throw new InvalidDataException($"it claims {count} entries");
            // Each entry takes at least four bytes: a name length, a dtype, a rank and one byte of name or data.
            if (count > data.Length / 4) throw new InvalidDataException($"{count} entries cannot fit in {data.Length} bytes");
            var entries = new List<Entry>((int)count);
            var names = new HashSet<string>(StringComparer.Ordinal);
            for (long i = 0; i < count; i++)
            {
                long nameLength = SevenBitLength(data, ref position);
                if (nameLength > data.Length - position) throw new InvalidDataException($"entry {i}'s name runs past the end of the file");
                string name;
                try
                {
                    name = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(data.Slice(position, (int)nameLength));
                }
                catch (ArgumentException)
                {
                    throw new InvalidDataException($"entry {i}'s name is not UTF-8");
                }
                position += (int)nameLength;
                if (!names.Add(name)) throw new InvalidDataException($"'{name}' appears twice");

                long type = Leb128(data, ref position);
                var dtype = (ScalarType)type;
                if (type > int.MaxValue || !Enum.IsDefined(dtype)) throw new InvalidDataException($"'{name}' has an unknown dtype ({type})");
                int elementSize;
                try
                {
                    elementSize = TensorBytes.ElementSize(dtype);
                }
                catch (NotSupportedException)
                {
                    throw new InvalidDataException($"'{name}' has dtype {dtype}, which ModelDsl does not read");
                }
                long rank = Leb128(data, ref position);
                if (rank > MaxRank) throw new InvalidDataException($"'{name}' claims {rank} dimensions");
                var shape = new long[rank];
                long bytes = elementSize;
                for (int d = 0; d < rank; d++)
                {
                    shape[d] = Leb128(data, ref position);
                    // Checked against what is left at every step, so no product can overflow.
                    if (shape[d] > 0 && bytes > 0 && shape[d] > (data.Length - position) / bytes)
                        throw new InvalidDataException($"'{name}' claims shape [{string.Join(", ", shape.Take(d + 1))}{(d + 1 < rank ? ", …" : "")}], more than the file holds");
                    bytes *= shape[d];
                }
                if (bytes > data.Length - position) throw new InvalidDataException($"'{name}' runs past the end of the file");
                entries.Add(new Entry(name, dtype, shape, position, (int)bytes));
                position += (int)bytes;
            }
            if (position != data.Length) throw new InvalidDataException($"{data.Length - position} bytes follow the last entry");
            return entries;
        }

        /// <summary>
        /// Reads a file that <c>Module.save</c> wrote: (name, tensor) in the file's order, as new CPU tensors the
        /// caller owns. Anything else is a <see cref="ModelFileException"/> naming the file.
        /// </summary>
        public static List<(string Name, Tensor Tensor)> Load(string path)
        {
            ArgumentException.ThrowIfNullOrEmpty(path);
            byte[] bytes = ModelFiles.ReadAll(path);
            List<Entry> entries;
            try
            {
                entries = ReadEntries(bytes);
            }
            catch (InvalidDataException e)
            {
                throw new ModelFileException(path, $"{path} is not a TorchSharp model file ModelDsl can read: {e.Message}", e);
            }
            var tensors = new List<(string, Tensor)>(entries.Count);
            foreach (var e in entries)
                tensors.Add((e.Name, TensorBytes.Create(bytes.AsSpan(e.Offset, e.Length), e.Shape, e.DType)));
            return tensors;
        }

        /// <summary>Whether <paramref name="data"/> is a whole state dict in this format (what format detection asks).</summary>
        public static bool Holds(ReadOnlySpan<byte> data)
        {
            try
            {
                ReadEntries(data);
                return true;
            }
            catch (InvalidDataException)
            {
                return false;
            }
        }

        // TorchSharp's LEB128Codec: unsigned, seven bits per byte, low group first; at most 63 bits here.
        private static long Leb128(ReadOnlySpan<byte> data, ref int position) =>
            SevenBitGroups(data, ref position, bits: 63, max: long.MaxValue, "a length is not valid LEB128");

        // BinaryWriter's string length prefix: seven bits per byte, at most five bytes, a non-negative int.
        private static long SevenBitLength(ReadOnlySpan<byte> data, ref int position) =>
            SevenBitGroups(data, ref position, bits: 35, max: int.MaxValue, "a name length is not valid");

        // An unsigned number in groups of seven bits, low group first, the high bit of a byte set while more follow:
        // at most bits / 7 bytes and at most max, else `invalid`.
        private static long SevenBitGroups(ReadOnlySpan<byte> data, ref int position, int bits, long max, string invalid)
        {
            long value = 0;
            for (int shift = 0; shift < bits; shift += 7)
            {
                if (position >= data.Length) throw new InvalidDataException("it ends in the middle of an entry");
                byte b = data[position++];
                value |= (long)(b & 0x7f) << shift;
                if ((b & 0x80) == 0) return value <= max ? value : throw new InvalidDataException(invalid);
            }
            throw new InvalidDataException(invalid);
        }
    }
}
