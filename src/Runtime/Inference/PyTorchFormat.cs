using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using System.Text;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>
    /// PyTorch's own file format for a state dict, as <c>torch.save(model.state_dict(), path)</c> writes it and
    /// <c>torch.load</c> reads it (the zip format PyTorch uses since 1.6): a zip archive holding <c>data.pkl</c>
    /// (a pickle of an <c>OrderedDict</c> of tensors), one <c>data/&lt;key&gt;</c> record of raw little-endian
    /// bytes per storage, and <c>version</c>.
    /// </summary>
    /// <remarks>
    /// The writer emits only what <c>torch.load(..., weights_only=True)</c> accepts: <c>collections.OrderedDict</c>,
    /// <c>torch._utils._rebuild_tensor_v2</c> and the typed storage classes. The reader is not a Python unpickler:
    /// it understands the pickle opcodes and the few globals that state dicts are made of and refuses anything else
    /// (no code is ever run), so it loads state dicts saved by PyTorch, not arbitrary pickled objects.
    /// </remarks>
    public static class PyTorchFormat
    {
        // PyTorch's typed storages by dtype: the class named in the pickle decides the dtype of the raw bytes.
        private static readonly (ScalarType Type, string Storage)[] Storages =
        {
            (ScalarType.Float32, "FloatStorage"), (ScalarType.Float64, "DoubleStorage"), (ScalarType.Float16, "HalfStorage"),
            (ScalarType.BFloat16, "BFloat16Storage"), (ScalarType.Int64, "LongStorage"), (ScalarType.Int32, "IntStorage"),
            (ScalarType.Int16, "ShortStorage"), (ScalarType.Int8, "CharStorage"), (ScalarType.Byte, "ByteStorage"),
            (ScalarType.Bool, "BoolStorage"),
        };

        // A fixed timestamp keeps the archive's bytes a function of the tensors alone.
        private static readonly DateTimeOffset ZipTime = new(1980, 1, 1, 0, 0, 0, TimeSpan.Zero);

        /// <summary>Writes <paramref name="tensors"/> as a PyTorch state dict (an <c>OrderedDict</c> in the given order), atomically and deterministically.</summary>
        public static void Save(IEnumerable<(string Name, Tensor Tensor)> tensors, string path)
        {
            ArgumentNullException.ThrowIfNull(tensors);
            ArgumentException.ThrowIfNullOrEmpty(path);
            var list = tensors.ToList();
            var pickle = new PickleWriter();
            pickle.Proto();
            pickle.Global("collections", "OrderedDict");
            pickle.EmptyTuple();
            pickle.Reduce();
            pickle.Mark();
            var blobs = new List<byte[]>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (name, tensor) in list)
            {
                if (!names.Add(name)) throw new ArgumentException($"tensor name '{name}' is repeated", nameof(tensors));
                string storage = Storages.FirstOrDefault(s => s.Type == tensor.dtype).Storage
                                 ?? throw new NotSupportedException($"a PyTorch file cannot hold '{name}' of dtype {tensor.dtype} here");
                long[] shape = tensor.shape;
                long numel = shape.Aggregate(1L, (a, b) => a * b);
                string key = blobs.Count.ToString(CultureInfo.InvariantCulture);
                blobs.Add(TensorBytes.Read(tensor));

                pickle.Unicode(name);
                // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks)
                pickle.Global("torch._utils", "_rebuild_tensor_v2");
                pickle.Mark();
                pickle.Mark();
                pickle.Unicode("storage");
                pickle.Global("torch", storage);
                pickle.Unicode(key);
                pickle.Unicode("cpu");
                pickle.Int(numel);
                pickle.Tuple();
                pickle.PersistentId();
                pickle.Int(0);
                pickle.IntTuple(shape);
                pickle.IntTuple(ContiguousStrides(shape));
                pickle.Bool(false);
                pickle.Global("collections", "OrderedDict");
                pickle.EmptyTuple();
                pickle.Reduce();
                pickle.Tuple();
                pickle.Reduce();
            }
            pickle.SetItems();
            pickle.Stop();

            // The archive name is the folder every record sits in; torch.load takes it from the first record.
            string archive = "archive";
            ModelFiles.AtomicWrite(path, stream =>
            {
                using var zip = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true);
                Add(zip, archive + "/data.pkl", pickle.ToArray());
                Add(zip, archive + "/byteorder", Encoding.ASCII.GetBytes("little"));
                for (int i = 0; i < blobs.Count; i++)
                    Add(zip, archive + "/data/" + i.ToString(CultureInfo.InvariantCulture), blobs[i]);
                Add(zip, archive + "/version", Encoding.ASCII.GetBytes("3\n"));
            });
        }

        /// <summary>
        /// Reads a state dict that <c>torch.save</c> wrote (or <see cref="Save"/>): (name, tensor) in the file's order,
        /// as new CPU tensors the caller owns. Anything that is not a state dict of tensors is a
        /// <see cref="ModelFileException"/> naming the file.
        /// </summary>
        public static List<(string Name, Tensor Tensor)> Load(string path)
        {
            ArgumentException.ThrowIfNullOrEmpty(path);
            byte[] bytes = ModelFiles.ReadAll(path);
            // What the entries may inflate to, all together: torch.save stores records uncompressed, so a file
            // holds its data; a compressed archive may expand to a few times its size, not to a zip bomb.
            long budget = MaxExpansion * (long)bytes.Length + 65536;
            try
            {
                using var zip = new ZipArchive(new MemoryStream(bytes, writable: false), ZipArchiveMode.Read);
                var pkl = zip.Entries.FirstOrDefault(e => e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal) && e.FullName.Count(c => c == '/') == 1)
                          ?? throw Bad(path, "the archive has no data.pkl (was it written by torch.save?)");
                string prefix = pkl.FullName.Substring(0, pkl.FullName.Length - "data.pkl".Length);
                var storages = new Dictionary<string, Tensor>(StringComparer.Ordinal);
                try
                {
                    var root = new PickleReader(Entry(pkl, ref budget), persistentId =>
                    {
                        // ('storage', <storage class>, key, location, numel)
                        if (persistentId is not object?[] { Length: 5 } id || id[0] as string != "storage" || id[1] is not PickleGlobal storageClass || id[2] is not string key)
                            throw new InvalidDataException("a persistent id that is not a tensor storage");
                        if (storages.TryGetValue(key, out var existing)) return existing;
                        var type = Storages.FirstOrDefault(s => storageClass.Module == "torch" && s.Storage == storageClass.Name);
                        if (type.Storage is null) throw new InvalidDataException($"storage class {storageClass} is not supported");
                        var record = zip.GetEntry(prefix + "data/" + key) ?? throw new InvalidDataException($"the record data/{key} is missing");
                        byte[] data = Entry(record, ref budget);
                        long count = data.Length / TensorBytes.ElementSize(type.Type);
                        var storage = TensorBytes.Create(data.AsSpan(0, (int)(count * TensorBytes.ElementSize(type.Type))), new[] { count }, type.Type);
                        storages[key] = storage;
                        return storage;
                    }).Read();
                    return ToStateDict(path, root);
                }
                finally
                {
                    foreach (var s in storages.Values) s.Dispose();
                }
            }
            catch (Exception e) when (e is InvalidDataException or IOException or NotSupportedException)
            {
                // System.IO.Compression reports a damaged archive with any of these.
                throw Bad(path, e.Message);
            }
        }

        /// <summary>How many times its own size the entries of a file may inflate to, all together.</summary>
        public const int MaxExpansion = 4;

        private static List<(string, Tensor)> ToStateDict(string path, object? root)
        {
            if (root is not PickleDict dict)
                throw Bad(path, $"it holds a {PickleReader.Describe(root)}, not a state dict (save model.state_dict(), not the model)");
            var result = new List<(string, Tensor)>();
            foreach (var (key, value) in dict.Items)
            {
                if (key is not string name) throw Bad(path, "a state-dict key is not a string");
                if (value is not Tensor tensor) throw Bad(path, $"'{name}' is a {PickleReader.Describe(value)}, not a tensor");
                result.Add((name, tensor));
            }
            return result;
        }

        /// <summary>Row-major strides of a contiguous tensor.</summary>
        private static long[] ContiguousStrides(long[] shape)
        {
            var strides = new long[shape.Length];
            long stride = 1;
            for (int i = shape.Length - 1; i >= 0; i--)
            {
                strides[i] = stride;
                stride *= Math.Max(1, shape[i]);
            }
            return strides;
        }

        private static void Add(ZipArchive zip, string name, byte[] data)
        {
            // Stored, not deflated: PyTorch reads records in place and newer versions memory-map them.
            var entry = zip.CreateEntry(name, CompressionLevel.NoCompression);
            entry.LastWriteTime = ZipTime;
            using var s = entry.Open();
            s.Write(data);
        }

        /// <summary>An entry's bytes, refused before they are inflated when they would exceed what is left of <paramref name="budget"/>.</summary>
        private static byte[] Entry(ZipArchiveEntry entry, ref long budget)
        {
            // The declared size first (no allocation for a claim), then the actual bytes (a header may lie).
            if (entry.Length > budget || entry.Length > Array.MaxLength)
                throw new InvalidDataException($"the entry {entry.FullName} expands to {entry.Length} bytes, more than {MaxExpansion} times the file");
            byte[] data = new byte[entry.Length];
            using var s = entry.Open();
            int read = s.ReadAtLeast(data, data.Length, throwOnEndOfStream: false);
            if (read != data.Length || s.ReadByte() >= 0)
                throw new InvalidDataException($"the entry {entry.FullName} does not hold the {entry.Length} bytes its header says");
            budget -= data.Length;
            return data;
        }

        private static ModelFileException Bad(string path, string what) => new(path, $"{path} is not a PyTorch state dict ModelDsl can read: {what}");

        /// <summary>Tensors rebuilt by the reader: a view of a storage as <c>_rebuild_tensor_v2</c> describes it, copied out.</summary>
        internal static Tensor Rebuild(Tensor storage, long offset, long[] size, long[] stride)
        {
            if (size.Length != stride.Length || size.Length > 64) throw new InvalidDataException("a tensor's size and stride do not match");
            if (offset < 0 || size.Any(n => n < 0) || stride.Any(s => s < 0)) throw new InvalidDataException("a tensor has a negative size, stride or offset");
            if (size.Any(n => n == 0)) return torch.empty(size, storage.dtype);
            long elements = 1;
            foreach (long n in size)
            {
                if (n > 0 && elements > storage.shape[0] / n) throw new InvalidDataException($"a tensor of size ({string.Join(", ", size)}) has more elements than its storage ({storage.shape[0]})");
                elements *= n;
            }
            if (elements == 0) return torch.empty(size, storage.dtype);
            long needed;
            try
            {
                needed = checked(offset + 1 + size.Zip(stride, (n, s) => checked((n - 1) * s)).Sum());
            }
            catch (OverflowException)
            {
                needed = long.MaxValue;
            }
            if (needed > storage.shape[0]) throw new InvalidDataException("a tensor reaches beyond its storage");
            using var view = storage.as_strided(size, stride, offset);
            return view.clone();
        }
    }

    /// <summary>A Python global a pickle names (<c>module.name</c>).</summary>
    internal sealed record PickleGlobal(string Module, string Name)
    {
        public override string ToString() => Module + "." + Name;
    }

    /// <summary>A dict or OrderedDict, keeping insertion order.</summary>
    internal sealed class PickleDict
    {
        public List<KeyValuePair<object?, object?>> Items { get; } = new();
    }

    /// <summary>The pickle opcodes a state dict needs, written as protocol 2 (what torch.save uses by default).</summary>
    internal sealed class PickleWriter
    {
        private readonly MemoryStream _out = new();

        public void Proto() { _out.WriteByte(0x80); _out.WriteByte(2); }
        public void Global(string module, string name) { _out.WriteByte((byte)'c'); Ascii(module + "\n" + name + "\n"); }
        public void EmptyTuple() => _out.WriteByte((byte)')');
        public void Mark() => _out.WriteByte((byte)'(');
        public void Tuple() => _out.WriteByte((byte)'t');
        public void Reduce() => _out.WriteByte((byte)'R');
        public void SetItems() => _out.WriteByte((byte)'u');
        public void PersistentId() => _out.WriteByte((byte)'Q');
        public void Bool(bool value) => _out.WriteByte(value ? (byte)0x88 : (byte)0x89);
        public void Stop() => _out.WriteByte((byte)'.');

        public void Unicode(string text)
        {
            byte[] utf8 = Encoding.UTF8.GetBytes(text);
            _out.WriteByte((byte)'X');
            Span<byte> length = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(length, (uint)utf8.Length);
            _out.Write(length);
            _out.Write(utf8);
        }

        public void Int(long value)
        {
            Span<byte> buffer = stackalloc byte[8];
            if (value >= 0 && value < 256)
            {
                _out.WriteByte((byte)'K');
                _out.WriteByte((byte)value);
            }
            else if (value >= int.MinValue && value <= int.MaxValue)
            {
                _out.WriteByte((byte)'J');
                BinaryPrimitives.WriteInt32LittleEndian(buffer, (int)value);
                _out.Write(buffer[..4]);
            }
            else
            {
                // LONG1: a length byte, then the two's-complement little-endian bytes.
                _out.WriteByte(0x8a);
                _out.WriteByte(8);
                BinaryPrimitives.WriteInt64LittleEndian(buffer, value);
                _out.Write(buffer);
            }
        }

        public void IntTuple(long[] values)
        {
            if (values.Length == 0)
            {
                EmptyTuple();
                return;
            }
            Mark();
            foreach (var v in values) Int(v);
            Tuple();
        }

        public byte[] ToArray() => _out.ToArray();

        private void Ascii(string text) => _out.Write(Encoding.ASCII.GetBytes(text));
    }

    /// <summary>
    /// A pickle reader for state dicts: a stack machine over the opcodes of protocols 0–5 that such files use,
    /// which builds only plain values, tuples, lists, dicts and tensors. Globals are matched against a short
    /// allow-list; anything else fails. It never executes code.
    /// </summary>
    internal sealed class PickleReader
    {
        private static readonly object Mark = new();
        private readonly byte[] _data;
        private readonly Func<object?, object?> _persistentLoad;
        private readonly List<object?> _stack = new();
        private readonly Dictionary<long, object?> _memo = new();
        private int _position;

        public PickleReader(byte[] data, Func<object?, object?> persistentLoad)
        {
            _data = data;
            _persistentLoad = persistentLoad;
        }

        public static string Describe(object? value) => value switch
        {
            null => "None",
            PickleGlobal g => g.ToString(),
            PickleDict => "dict",
            object?[] => "tuple",
            List<object?> => "list",
            Tensor => "tensor",
            _ => value.GetType().Name,
        };

        public object? Read()
        {
            // A state dict's pickle spends several bytes per value it keeps; one that holds more values at once than
            // half its bytes (plus a margin) is not one, and is stopped before it costs memory.
            long limit = _data.Length / 2 + 1024;
            while (true)
            {
                if (_stack.Count + _memo.Count > limit) throw new InvalidDataException($"the pickle builds more than {limit} values at once");
                byte op = Byte();
                switch (op)
                {
                    case 0x80: Byte(); break;                                   // PROTO
                    case 0x95: Skip(8); break;                                  // FRAME
                    case (byte)'.': return Pop();                               // STOP
                    case (byte)'(': _stack.Add(Mark); break;                    // MARK
                    case (byte)')': _stack.Add(Array.Empty<object?>()); break;  // EMPTY_TUPLE
                    case (byte)']': _stack.Add(new List<object?>()); break;     // EMPTY_LIST
                    case (byte)'}': _stack.Add(new PickleDict()); break;        // EMPTY_DICT
                    case (byte)'N': _stack.Add(null); break;                    // NONE
                    case 0x88: _stack.Add(true); break;                         // NEWTRUE
                    case 0x89: _stack.Add(false); break;                        // NEWFALSE
                    case (byte)'K': _stack.Add((long)Byte()); break;            // BININT1
                    case (byte)'M': _stack.Add((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(2))); break; // BININT2
                    case (byte)'J': _stack.Add((long)BinaryPrimitives.ReadInt32LittleEndian(Take(4))); break;  // BININT
                    case 0x8a: _stack.Add(Long(Take(Byte()))); break;           // LONG1
                    case (byte)'G': _stack.Add(BinaryPrimitives.ReadDoubleBigEndian(Take(8))); break; // BINFLOAT
                    case (byte)'X': _stack.Add(Utf8(Take(BinaryPrimitives.ReadUInt32LittleEndian(Take(4))))); break; // BINUNICODE
                    case 0x8c: _stack.Add(Utf8(Take(Byte()))); break;           // SHORT_BINUNICODE
                    case (byte)'U': _stack.Add(Encoding.Latin1.GetString(Take(Byte()))); break; // SHORT_BINSTRING
                    case (byte)'T': _stack.Add(Encoding.Latin1.GetString(Take(BinaryPrimitives.ReadUInt32LittleEndian(Take(4))))); break; // BINSTRING
                    case (byte)'c': _stack.Add(new PickleGlobal(Line(), Line())); break; // GLOBAL
                    case 0x93: { var name = Pop() as string; var module = Pop() as string; _stack.Add(new PickleGlobal(module ?? "", name ?? "")); break; } // STACK_GLOBAL
                    case (byte)'q': _memo[Byte()] = Peek(); break;              // BINPUT
                    case (byte)'r': _memo[BinaryPrimitives.ReadUInt32LittleEndian(Take(4))] = Peek(); break; // LONG_BINPUT
                    case 0x94: _memo[_memo.Count] = Peek(); break;              // MEMOIZE
                    case (byte)'h': _stack.Add(Memo(Byte())); break;            // BINGET
                    case (byte)'j': _stack.Add(Memo(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))); break; // LONG_BINGET
                    case (byte)'t': _stack.Add(PopToMark().ToArray()); break;   // TUPLE
                    case 0x85: _stack.Add(new[] { Pop() }); break;              // TUPLE1
                    case 0x86: { var b = Pop(); var a = Pop(); _stack.Add(new[] { a, b }); break; } // TUPLE2
                    case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); _stack.Add(new[] { a, b, c }); break; } // TUPLE3
                    case (byte)'l': _stack.Add(PopToMark()); break;             // LIST
                    case (byte)'a': { var v = Pop(); AsList(Peek()).Add(v); break; } // APPEND
                    case (byte)'e': { var items = PopToMark(); AsList(Peek()).AddRange(items); break; } // APPENDS
                    case (byte)'s': { var v = Pop(); var k = Pop(); AsDict(Peek()).Items.Add(new(k, v)); break; } // SETITEM
                    case (byte)'u':                                              // SETITEMS
                    {
                        var items = PopToMark();
                        var dict = AsDict(Peek());
                        for (int i = 0; i + 1 < items.Count; i += 2) dict.Items.Add(new(items[i], items[i + 1]));
                        break;
                    }
                    case (byte)'Q': _stack.Add(_persistentLoad(Pop())); break;  // BINPERSID
                    case (byte)'R': { var args = Pop() as object?[] ?? throw new InvalidDataException("REDUCE without an argument tuple"); _stack.Add(Call(Pop(), args)); break; }
                    case 0x81: { var args = Pop() as object?[] ?? Array.Empty<object?>(); _stack.Add(Call(Pop(), args)); break; } // NEWOBJ
                    case (byte)'b': Pop(); break;                               // BUILD: the state (an OrderedDict's _metadata) is not needed
                    default:
                        throw new InvalidDataException($"pickle opcode 0x{op:x2} at byte {_position - 1} is not used by state dicts");
                }
            }
        }

        /// <summary>The allow-list: what a state dict is built from.</summary>
        private static object? Call(object? callable, object?[] args)
        {
            if (callable is not PickleGlobal g) throw new InvalidDataException($"cannot call a {Describe(callable)}");
            switch (g.ToString())
            {
                case "collections.OrderedDict":
                case "builtins.dict":
                    return new PickleDict();
                case "torch._utils._rebuild_tensor_v2":
                case "torch._utils._rebuild_tensor":
                    if (args.Length < 4 || args[0] is not Tensor storage || args[1] is not long offset)
                        throw new InvalidDataException("a tensor record is malformed");
                    return PyTorchFormat.Rebuild(storage, offset, Longs(args[2]), Longs(args[3]));
                case "torch._utils._rebuild_parameter":
                case "torch._utils._rebuild_parameter_with_state":
                    return args.Length > 0 && args[0] is Tensor t ? t : throw new InvalidDataException("a parameter record is malformed");
                default:
                    throw new InvalidDataException($"it refers to {g}, which is not part of a state dict");
            }
        }

        private static long[] Longs(object? tuple) =>
            tuple is object?[] items && items.All(i => i is long) ? items.Select(i => (long)i!).ToArray() : throw new InvalidDataException("a tensor size or stride is not a tuple of integers");

        private static List<object?> AsList(object? value) => value as List<object?> ?? throw new InvalidDataException($"items appended to a {Describe(value)}");

        private static PickleDict AsDict(object? value) => value as PickleDict ?? throw new InvalidDataException($"items set on a {Describe(value)}");

        private object? Memo(long key) => _memo.TryGetValue(key, out var v) ? v : throw new InvalidDataException($"memo {key} is undefined");

        private byte Byte() => _position < _data.Length ? _data[_position++] : throw new InvalidDataException("the pickle ends early");

        private ReadOnlySpan<byte> Take(long count)
        {
            if (count < 0 || count > _data.Length - _position) throw new InvalidDataException("the pickle ends early");
            var span = _data.AsSpan(_position, (int)count);
            _position += (int)count;
            return span;
        }

        private void Skip(int count) => Take(count);

        private string Line()
        {
            int end = Array.IndexOf(_data, (byte)'\n', _position);
            if (end < 0) throw new InvalidDataException("the pickle ends early");
            string text = Encoding.ASCII.GetString(_data, _position, end - _position);
            _position = end + 1;
            return text;
        }

        private static string Utf8(ReadOnlySpan<byte> bytes) => Encoding.UTF8.GetString(bytes);

        private static long Long(ReadOnlySpan<byte> bytes)
        {
            if (bytes.Length > 8) throw new InvalidDataException("an integer beyond 64 bits");
            long value = 0;
            for (int i = bytes.Length - 1; i >= 0; i--) value = (value << 8) | bytes[i];
            // Sign-extend from the top byte.
            if (bytes.Length is > 0 and < 8 && (bytes[^1] & 0x80) != 0) value -= 1L << (8 * bytes.Length);
            return value;
        }

        private object? Pop()
        {
            if (_stack.Count == 0) throw new InvalidDataException("the pickle pops an empty stack");
            var v = _stack[^1];
            _stack.RemoveAt(_stack.Count - 1);
            if (ReferenceEquals(v, Mark)) throw new InvalidDataException("the pickle pops a mark");
            return v;
        }

        private object? Peek() => _stack.Count > 0 ? _stack[^1] : throw new InvalidDataException("the pickle reads an empty stack");

        private List<object?> PopToMark()
        {
            int mark = _stack.FindLastIndex(v => ReferenceEquals(v, Mark));
            if (mark < 0) throw new InvalidDataException("the pickle has no mark");
            var items = _stack.GetRange(mark + 1, _stack.Count - mark - 1);
            _stack.RemoveRange(mark, _stack.Count - mark);
            return items;
        }
    }
}
