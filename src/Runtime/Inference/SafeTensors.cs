using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>
    /// The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header naming each
    /// tensor's dtype, shape and byte range, then the raw little-endian data. Named after the Python package's
    /// <c>save_file</c>/<c>load_file</c>; PyTorch reads it without that package (docs/inference.md shows how).
    /// </summary>
    public static class SafeTensors
    {
        /// <summary>The key of the optional string-to-string metadata in the header.</summary>
        public const string MetadataKey = "__metadata__";

        // The reference implementation refuses headers above 100 MB; so does this one, before allocating.
        private const long MaxHeaderLength = 100_000_000;

        private static readonly (ScalarType Type, string Name)[] DTypes =
        {
            (ScalarType.Float64, "F64"), (ScalarType.Float32, "F32"), (ScalarType.Float16, "F16"), (ScalarType.BFloat16, "BF16"),
            (ScalarType.Int64, "I64"), (ScalarType.Int32, "I32"), (ScalarType.Int16, "I16"), (ScalarType.Int8, "I8"),
            (ScalarType.Byte, "U8"), (ScalarType.Bool, "BOOL"),
        };

        /// <summary>
        /// Writes <paramref name="tensors"/> (name, tensor) in the given order, with optional string metadata. The
        /// output is deterministic: the same tensors and metadata give the same bytes. Written atomically.
        /// </summary>
        public static void Save(IEnumerable<(string Name, Tensor Tensor)> tensors, string path, IReadOnlyDictionary<string, string>? metadata = null)
        {
            ArgumentNullException.ThrowIfNull(tensors);
            ArgumentException.ThrowIfNullOrEmpty(path);
            var header = new JsonObject();
            if (metadata is { Count: > 0 })
            {
                var m = new JsonObject();
                foreach (var (key, value) in metadata) m[key] = value;
                header[MetadataKey] = m;
            }
            var blobs = new List<byte[]>();
            long offset = 0;
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (name, tensor) in tensors)
            {
                if (name == MetadataKey || !seen.Add(name)) throw new ArgumentException($"tensor name '{name}' is reserved or repeated", nameof(tensors));
                string dtype = DTypes.FirstOrDefault(d => d.Type == tensor.dtype).Name
                               ?? throw new NotSupportedException($"safetensors cannot hold '{name}' of dtype {tensor.dtype}");
                byte[] data = TensorBytes.Read(tensor);
                header[name] = new JsonObject
                {
                    ["dtype"] = dtype,
                    ["shape"] = new JsonArray(tensor.shape.Select(d => (JsonNode)d).ToArray()),
                    ["data_offsets"] = new JsonArray(offset, offset + data.Length),
                };
                offset += data.Length;
                blobs.Add(data);
            }

            byte[] json = Encoding.UTF8.GetBytes(header.ToJsonString());
            // Pad the header with spaces to a multiple of 8 so the data that follows is aligned (as the reference writer does).
            int padded = (json.Length + 7) / 8 * 8;
            AtomicWrite(path, stream =>
            {
                Span<byte> length = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)padded);
                stream.Write(length);
                stream.Write(json);
                for (int i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
                foreach (var blob in blobs) stream.Write(blob);
            });
        }

        /// <summary>
        /// Reads a safetensors file: its tensors in header order (as new CPU tensors the caller owns) and its
        /// metadata. Any malformation is a <see cref="ModelFileException"/> naming the file.
        /// </summary>
        public static (List<(string Name, Tensor Tensor)> Tensors, Dictionary<string, string> Metadata) Load(string path)
        {
            ArgumentException.ThrowIfNullOrEmpty(path);
            byte[] bytes = ModelFiles.ReadAll(path);
            if (bytes.Length < 8) throw Bad(path, "the file is shorter than the 8-byte header length");
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
            if (headerLength > MaxHeaderLength || 8 + (long)headerLength > bytes.Length) throw Bad(path, $"the header length {headerLength} does not fit the file ({bytes.Length} bytes)");
            JsonObject header;
            try
            {
                header = JsonNode.Parse(bytes.AsSpan(8, (int)headerLength)) as JsonObject ?? throw Bad(path, "the header is not a JSON object");
                _ = header.Count; // materialises the properties: a repeated name throws here
            }
            catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException)
            {
                // InvalidOperationException: a name that is not valid UTF-8.
                throw Bad(path, "the header is not valid JSON: " + Training.StepFailure.FirstLine(e.Message));
            }

            long dataStart = 8 + (long)headerLength;
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var entries = new List<(string Name, ScalarType Type, long[] Shape, long Begin, long End)>();
            foreach (var (name, node) in header)
            {
                if (name == MetadataKey)
                {
                    if (node is JsonObject m)
                    {
                        try
                        {
                            foreach (var (key, value) in m)
                                if (value is JsonValue v && v.TryGetValue(out string? s)) metadata[key] = s;
                        }
                        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
                        {
                            throw Bad(path, "the metadata is not valid: " + Training.StepFailure.FirstLine(e.Message));
                        }
                    }
                    continue;
                }
                try
                {
                    var o = (JsonObject)node!;
                    string dtype = o["dtype"]!.GetValue<string>();
                    var type = DTypes.FirstOrDefault(d => d.Name == dtype);
                    if (type.Name is null) throw Bad(path, $"tensor '{name}' has dtype {dtype}, which ModelDsl does not read");
                    long[] shape = o["shape"]!.AsArray().Select(d => d!.GetValue<long>()).ToArray();
                    var offsets = o["data_offsets"]!.AsArray().Select(d => d!.GetValue<long>()).ToArray();
                    if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0] || dataStart + offsets[1] > bytes.Length)
                        throw Bad(path, $"tensor '{name}' has data offsets outside the file");
                    if (shape.Length > 64 || shape.Any(d => d < 0) || Bytes(shape, TensorBytes.ElementSize(type.Type)) != offsets[1] - offsets[0])
                        throw Bad(path, $"tensor '{name}' of shape [{string.Join(", ", shape)}] and dtype {dtype} does not fill its {offsets[1] - offsets[0]} bytes");
                    entries.Add((name, type.Type, shape, offsets[0], offsets[1]));
                }
                catch (Exception e) when (e is InvalidCastException or NullReferenceException or InvalidOperationException or FormatException or ArgumentException)
                {
                    throw Bad(path, $"the header entry of '{name}' is malformed ({e.Message})");
                }
            }

            var tensors = new List<(string, Tensor)>(entries.Count);
            foreach (var e in entries)
                tensors.Add((e.Name, TensorBytes.Create(bytes.AsSpan((int)(dataStart + e.Begin), (int)(e.End - e.Begin)), e.Shape, e.Type)));
            return (tensors, metadata);
        }

        private static ModelFileException Bad(string path, string what) => new(path, $"{path} is not a valid safetensors file: {what}");

        /// <summary>The bytes a tensor of <paramref name="shape"/> takes; -1 when that overflows (no file holds it).</summary>
        private static long Bytes(long[] shape, int elementSize)
        {
            try
            {
                return checked(shape.Aggregate((long)elementSize, (a, b) => a * b));
            }
            catch (OverflowException)
            {
                return -1;
            }
        }

        internal static void AtomicWrite(string path, Action<Stream> write) => ModelFiles.AtomicWrite(path, write);
    }
}
