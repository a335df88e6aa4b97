using System.Collections.Generic;
using System.Buffers.Binary;
using System.IO;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Tasks;
using ModelDsl.Runtime.Inference;
using ModelDsl.Runtime.Quantization;
using ModelDsl.Runtime.Tests.Interop;
using ModelDsl.Runtime.Tests.Pipeline;
using ModelDsl.Runtime.Training;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// Hostile model files, kept that way: every reader (PyTorch zip + pickle, safetensors, checkpoint, the optimised
/// model's TorchSharp file) fed truncated, bit-flipped and re-sized copies of a valid file and hand-made attacks,
/// with fixed seeds. Each read either succeeds (a flipped weight bit is still a model) or ends in the one documented
/// exception, within seconds, allocating no more than a small multiple of the file.
/// </summary>
[Collection(GlobalTorchStateCollection.Name)]
public sealed class HostileFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-hostile-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public void Rebuild_OfAnEmptyTensor_OverAnEmptyStorage_IsAnEmptyTensor_NotARefusal()
    {
        // torch.save({'w': torch.empty(5, 0)}) stores a 0-element storage; the storage bound must not refuse it.
        using var storage = zeros(0);
        using var rebuilt = PyTorchFormat.Rebuild(storage, 0, new long[] { 5, 0 }, new long[] { 0, 1 });
        Assert.Equal(new long[] { 5, 0 }, rebuilt.shape);
        using var small = zeros(3);
        Assert.Throws<InvalidDataException>(() => PyTorchFormat.Rebuild(small, 0, new long[] { 2, 2 }, new long[] { 2, 1 }));
    }

    // ---- the fuzzing loop ------------------------------------------------------------------------------------

    /// <summary>
    /// Writes each variant to a file and reads it with <paramref name="read"/>: it must return or throw
    /// <typeparamref name="TException"/> naming the file, within 10 s, allocating at most 32× the file + 4 MiB.
    /// Returns how many variants were refused.
    /// </summary>
    private int Survives<TException>(string name, IEnumerable<byte[]> variants, Action<string> read) where TException : Exception
    {
        var path = Path.Combine(_dir, name);
        int refused = 0, i = 0;
        foreach (var bytes in variants)
        {
            File.WriteAllBytes(path, bytes);
            long before = GC.GetTotalAllocatedBytes(precise: true);
            var task = Task.Run(() =>
            {
                try
                {
                    read(path);
                    return null;
                }
                catch (Exception e)
                {
                    return e;
                }
            });
            Assert.True(task.Wait(TimeSpan.FromSeconds(10)), $"variant {i} of {name} did not finish in 10 s");
            long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
            Assert.True(allocated <= 32L * bytes.Length + (4 << 20), $"variant {i} of {name} ({bytes.Length} bytes) allocated {allocated} bytes");
            if (task.Result is { } e)
            {
                Assert.True(e is TException, $"variant {i} of {name}: {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
                Assert.Contains(path, e.Message);
                Assert.DoesNotContain('\n', e.Message);
                refused++;
            }
            i++;
        }
        return refused;
    }

    /// <summary>Truncations, single-bit flips and eight-byte runs of 0xff (lengths that claim terabytes), from a fixed seed.</summary>
    private static IEnumerable<byte[]> Mutations(byte[] valid, int seed, int count = 60)
    {
        var random = new Random(seed);
        foreach (int length in new[] { 0, 1, 4, 8, 9, 16, valid.Length / 3, valid.Length / 2, valid.Length - 33, valid.Length - 1 })
            if (length >= 0 && length < valid.Length) yield return valid[..length];
        for (int i = 0; i < count; i++)
        {
            var flipped = (byte[])valid.Clone();
            int at = random.Next(flipped.Length);
            flipped[at] ^= (byte)(1 << random.Next(8));
            yield return flipped;
        }
        for (int i = 0; i < count / 2; i++)
        {
            var sized = (byte[])valid.Clone();
            int at = random.Next(Math.Max(1, sized.Length - 8));
            for (int k = 0; k < 8 && at + k < sized.Length; k++) sized[at + k] = 0xff;
            yield return sized;
        }
    }

    private byte[] Exported(ModelFileFormat format)
    {
        using var model = InteropCnn.WithFixedWeights();
        var path = Path.Combine(_dir, "valid." + format);
        ModelLoader.Export(model, path, format, nameof(InteropCnn));
        return File.ReadAllBytes(path);
    }

    private static void LoadInterop(string path) => InteropCnn.Load(path).Dispose();

    // ---- PyTorch: zip + pickle ------------------------------------------------------------------------------

    [Fact]
    public void PyTorchFile_Mutated_IsLoadedOrRefusedCleanly()
    {
        var valid = Exported(ModelFileFormat.PyTorch);
        Assert.True(Survives<ModelFileException>("mutated.pt", Mutations(valid, seed: 1), LoadInterop) > 40);
    }

    [Fact]
    public void PyTorchPickle_Mutated_IsLoadedOrRefusedCleanly()
    {
        // The same mutations inside data.pkl, in a well-formed archive: the pickle reader itself is fuzzed.
        var pickle = ReadEntry(Exported(ModelFileFormat.PyTorch), "archive/data.pkl");
        var records = Enumerable.Range(0, 6).Select(i => ("archive/data/" + i, ReadEntry(Exported(ModelFileFormat.PyTorch), "archive/data/" + i))).ToArray();
        Assert.True(Survives<ModelFileException>("pickle.pt", Mutations(pickle, seed: 2).Select(p => Zip(p, records)), LoadInterop) > 40);
    }

    [Theory]
    [InlineData("cos\nsystem\n(S'echo hi'\ntR.", "opcode 0x53")]                  // STRING, then os.system: never run
    [InlineData("cos\nsystem\n(X\u0002\0\0\0hitR.", "os.system, which is not part of a state dict")]
    [InlineData("cbuiltins\neval\n)R.", "builtins.eval, which is not part of a state dict")]
    [InlineData("(i__builtin__\nobject\n.", "opcode 0x69")]                       // INST
    [InlineData("]]a.", "")]                                                       // a list that is not a state dict
    [InlineData("}K\u0001a.", "")]                                                 // APPEND on a dict
    [InlineData("X\u00ff\u00ff\u00ff\u00ff.", "ends early")]                     // a 4 GiB string in a few bytes
    [InlineData("\u008a\u00ff.", "")]                                               // LONG1 of 255 bytes
    [InlineData("h\u0007.", "memo 7")]
    public void Pickle_OutsideTheAllowList_IsRefused_AndNothingRuns(string pickle, string expected)
    {
        var path = Path.Combine(_dir, "evil.pt");
        File.WriteAllBytes(path, Zip(Encoding.Latin1.GetBytes("\u0080\u0002" + pickle)));
        var e = Assert.Throws<ModelFileException>(() => LoadInterop(path));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Pickle_DeeplyNested_IsRefusedWithoutRecursion()
    {
        // 200,000 nested lists and tuples: the reader is a loop over a stack, not a recursion.
        var deep = new StringBuilder("\u0080\u0002");
        for (int i = 0; i < 100_000; i++) deep.Append(']');
        for (int i = 0; i < 99_999; i++) deep.Append('a');
        for (int i = 0; i < 100_000; i++) deep.Append("(");
        deep.Append('.');
        var path = Path.Combine(_dir, "deep.pt");
        File.WriteAllBytes(path, Zip(Encoding.Latin1.GetBytes(deep.ToString())));
        Assert.Equal(1, Survives<ModelFileException>("deep.pt", new[] { File.ReadAllBytes(path) }, LoadInterop));
    }

    [Theory]
    [InlineData(1L << 40, 1L, "more elements than its storage")]     // a tensor of a trillion elements over a 6-element storage
    [InlineData(3L, 1L << 62, "beyond its storage")]                  // a stride past the storage
    [InlineData(-3L, 1L, "negative")]
    public void TensorRecord_ClaimingMoreThanItsStorage_IsRefused(long size, long stride, string expected)
    {
        var path = Path.Combine(_dir, "huge.pt");
        File.WriteAllBytes(path, Zip(OneTensorPickle(storageNumel: 6, size, stride), ("archive/data/0", new byte[24])));
        var e = Assert.Throws<ModelFileException>(() => LoadInterop(path));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void ZipEntry_ThatExpandsEnormously_IsRefusedBeforeItIsInflated()
    {
        // 64 MiB of zeros deflate to ~64 KB: the bomb is refused by its ratio, not read into memory.
        var bombPath = Path.Combine(_dir, "bomb.pt");
        using (var stream = File.Create(bombPath))
        using (var zip = new ZipArchive(stream, ZipArchiveMode.Create))
        {
            Add(zip, "archive/data.pkl", OneTensorPickle(1L << 24, 1L << 24, 1), CompressionLevel.Optimal);
            using var data = zip.CreateEntry("archive/data/0", CompressionLevel.Optimal).Open();
            var zeros = new byte[1 << 20];
            for (int i = 0; i < 64; i++) data.Write(zeros);
        }
        var bomb = File.ReadAllBytes(bombPath);
        Assert.True(bomb.Length < 1 << 20);
        Assert.Equal(1, Survives<ModelFileException>("bomb.pt", new[] { bomb }, LoadInterop));
        var e = Assert.Throws<ModelFileException>(() => LoadInterop(bombPath));
        Assert.Contains("expands", e.Message);

        // A small entry whose header claims a terabyte: the claim is not believed either way.
        var valid = Exported(ModelFileFormat.PyTorch);
        var liar = (byte[])valid.Clone();
        int central = FindLast(liar, new byte[] { (byte)'P', (byte)'K', 1, 2 }, name: "archive/data/0");
        BinaryPrimitives.WriteUInt32LittleEndian(liar.AsSpan(central + 24), uint.MaxValue);
        Survives<ModelFileException>("liar.pt", new[] { liar }, LoadInterop);
    }

    // ---- safetensors ----------------------------------------------------------------------------------------

    [Fact]
    public void SafeTensorsFile_Mutated_IsLoadedOrRefusedCleanly()
    {
        var valid = Exported(ModelFileFormat.SafeTensors);
        Assert.True(Survives<ModelFileException>("mutated.safetensors", Mutations(valid, seed: 3), LoadInterop) > 40);
    }

    [Theory]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,0]}}", "does not fill")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", "does not fill")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,1099511627776]}}", "outside the file")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", "outside the file")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":\"x\",\"data_offsets\":[0,4]}}", "malformed")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", "malformed")]
    [InlineData("{\"a\":7}", "malformed")]
    public void SafeTensorsHeader_ThatLies_IsRefused(string header, string expected)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + 4];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)json.Length);
        json.CopyTo(bytes, 8);
        var path = Path.Combine(_dir, "lie.safetensors");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<ModelFileException>(() => LoadInterop(path));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void SafeTensorsHeader_NestedDeeply_OrClaimingTerabytes_IsRefused()
    {
        var deep = Encoding.UTF8.GetBytes("{\"a\":" + new string('[', 100_000) + new string(']', 100_000) + "}");
        var nested = new byte[8 + deep.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(nested, (ulong)deep.Length);
        deep.CopyTo(nested, 8);
        var huge = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(huge, 1UL << 40);
        huge[8] = (byte)'{';
        Assert.Equal(2, Survives<ModelFileException>("deep.safetensors", new[] { nested, huge }, LoadInterop));
    }

    // ---- checkpoints ----------------------------------------------------------------------------------------

    private byte[] ValidCheckpoint()
    {
        using var model = InteropCnn.WithFixedWeights();
        var path = Path.Combine(_dir, "valid.ckpt");
        Checkpoint.Save(path, model, optim.SGD(model.parameters(), 0.1), new CheckpointState { ModelName = nameof(InteropCnn), PlanFingerprint = "{}", Epoch = 3 });
        return File.ReadAllBytes(path);
    }

    /// <summary>A mutated checkpoint with its SHA-256 made right again: what reaches the parser behind the checksum.</summary>
    private static byte[] Rehashed(byte[] mutated)
    {
        if (mutated.Length < 40 || !mutated.AsSpan(0, 8).SequenceEqual("MDSLCKPT"u8)) return mutated;
        var result = (byte[])mutated.Clone();
        SHA256.HashData(result.AsSpan(0, result.Length - 32)).CopyTo(result, result.Length - 32);
        return result;
    }

    [Fact]
    public void Checkpoint_Mutated_IsLoadedOrRefusedCleanly_BothBeforeAndBehindItsChecksum()
    {
        var valid = ValidCheckpoint();
        // Through Load (inference) and through ReadState and Load (resume), each throwing its own documented type.
        Assert.True(Survives<ModelFileException>("mutated.ckpt", Mutations(valid, seed: 4), LoadInterop) > 60);
        Survives<ModelFileException>("rehashed.ckpt", Mutations(valid, seed: 5).Select(Rehashed), LoadInterop);
        Survives<CheckpointException>("resume.ckpt", Mutations(valid, seed: 6).Select(Rehashed), path =>
        {
            Checkpoint.ReadState(path);
            using var model = new InteropCnn();
            Checkpoint.Load(path, model, optim.SGD(model.parameters(), 0.1), nameof(InteropCnn), "{}");
        });
    }

    [Fact]
    public void Checkpoint_ModelSectionThatDisagreesWithItsMetadata_IsRefused()
    {
        // Behind a correct checksum, the model section claims a tensor of a terabyte.
        var valid = ValidCheckpoint();
        int modelSection = 16 + BinaryPrimitives.ReadInt32LittleEndian(valid.AsSpan(12)) + 8;
        int at = IndexOf(valid, Encoding.UTF8.GetBytes("Conv1.weight"), from: modelSection);
        Assert.True(at > 0);
        var forged = (byte[])valid.Clone();
        // The name, then dtype (1 byte) and rank (1 byte): the first size becomes a 5-byte LEB128 of 2^34.
        int size = at + "Conv1.weight".Length + 2;
        forged[size] = 0x80;
        var path = Path.Combine(_dir, "forged.ckpt");
        File.WriteAllBytes(path, Rehashed(forged));
        var e = Assert.Throws<ModelFileException>(() => LoadInterop(path));
        Assert.Contains("malformed", e.Message);
    }

    // ---- the optimised model (TorchSharp's Module.save format) ----------------------------------------------

    /// <summary>What the pipeline writes for PipelineNet: Hidden cut from 16 to 12 neurons, both Linear layers int8.</summary>
    private byte[] ValidOptimized(out PipelineNet model)
    {
        manual_seed(7);
        model = new PipelineNet();
        model.ReplaceLayer("Hidden", new DynamicQuantizedLinear(nn.Linear(8, 12), QuantizeMode.DynamicInt8)).Dispose();
        model.ReplaceLayer("Output", new DynamicQuantizedLinear(nn.Linear(12, 3), QuantizeMode.DynamicInt8)).Dispose();
        model.eval();
        var path = Path.Combine(_dir, "optimized.bin");
        model.save(path);
        return File.ReadAllBytes(path);
    }

    [Fact]
    public void OptimizedFile_LoadsWithThePlansLayers_FromItsFile()
    {
        ValidOptimized(out var saved);
        using (saved)
        {
            var path = Path.Combine(_dir, "optimized.bin");
            Assert.Equal(ModelFileFormat.TorchSharp, ModelLoader.DetectFormat(path));
            using var loaded = PipelineNet.Load(path);
            var hidden = Assert.IsType<DynamicQuantizedLinear>(loaded.GetLayer("Hidden"));
            Assert.Equal((8L, 12L), (hidden.in_features, hidden.out_features));
            ModelFileTests.AssertSameState(saved, loaded);
            var x = randn(5, 8, generator: new Generator(1));
            Assert.Equal(saved.call(x).data<float>().ToArray(), loaded.call(x).data<float>().ToArray());

            // A model whose plan declares no passes does not take it.
            var e = Assert.Throws<ModelFileException>(() => InteropCnn.Load(path));
            Assert.Contains("does not fit InteropCnn", e.Message);
        }
    }

    [Fact]
    public void OptimizedFile_WithSizesThePlanCannotMake_IsRefused()
    {
        ValidOptimized(out var saved);
        using (saved)
        {
            // Output taking 10 inputs from a Hidden of 12: the cut layers do not chain.
            saved.ReplaceLayer("Output", new DynamicQuantizedLinear(nn.Linear(10, 3), QuantizeMode.DynamicInt8)).Dispose();
            var path = Path.Combine(_dir, "unchained.bin");
            saved.save(path);
            var e = Assert.Throws<ModelFileException>(() => PipelineNet.Load(path));
            Assert.Contains("do not chain", e.Message);

            // Hidden wider than declared: pruning only removes neurons.
            saved.ReplaceLayer("Hidden", new DynamicQuantizedLinear(nn.Linear(8, 20), QuantizeMode.DynamicInt8)).Dispose();
            saved.save(path);
            e = Assert.Throws<ModelFileException>(() => PipelineNet.Load(path));
            Assert.Contains("pruning only removes", e.Message);
        }
    }

    [Fact]
    public void OptimizedFile_Mutated_IsLoadedOrRefusedCleanly()
    {
        var valid = ValidOptimized(out var saved);
        saved.Dispose();
        Assert.True(Survives<ModelFileException>("mutated.bin", Mutations(valid, seed: 7), path => PipelineNet.Load(path).Dispose()) > 40);
    }

    [Theory]
    [InlineData(new byte[] { 0xff, 0xff, 0xff, 0xff, 0x0f, 1, (byte)'a', 6, 0 })]                     // four billion entries
    [InlineData(new byte[] { 1, 0xff, 0xff, 0xff, 0xff, 0x07, (byte)'a', 6, 0 })]                    // a 2 GiB name
    [InlineData(new byte[] { 1, 1, (byte)'a', 6, 2, 0x80, 0x80, 0x80, 0x80, 0x10, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0, 0, 0 })] // [2^32, 2^32] floats
    [InlineData(new byte[] { 1, 1, (byte)'a', 99, 0, 0 })]                                             // an unknown dtype
    [InlineData(new byte[] { 1, 1, (byte)'a', 6, 0x7f, 0, 0, 0, 0 })]                                  // rank 127
    public void TorchSharpFile_ThatLies_IsRefused(byte[] bytes)
    {
        var path = Path.Combine(_dir, "lie.bin");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<ModelFileException>(() => PipelineNet.Load(path));
        Assert.Contains(path, e.Message);
        var direct = Assert.Throws<InvalidDataException>(() => TorchSharpFormat.ReadEntries(bytes));
        Assert.NotEmpty(direct.Message);
    }

    // ---- helpers ----------------------------------------------------------------------------------------------

    private static byte[] Zip(byte[] pickle, params (string Name, byte[] Data)[] records)
    {
        using var memory = new MemoryStream();
        using (var zip = new ZipArchive(memory, ZipArchiveMode.Create, leaveOpen: true))
        {
            Add(zip, "archive/data.pkl", pickle, CompressionLevel.NoCompression);
            foreach (var (name, data) in records) Add(zip, name, data, CompressionLevel.NoCompression);
        }
        return memory.ToArray();
    }

    private static void Add(ZipArchive zip, string name, byte[] data, CompressionLevel level)
    {
        using var s = zip.CreateEntry(name, level).Open();
        s.Write(data);
    }

    private static byte[] ReadEntry(byte[] zipBytes, string name)
    {
        using var zip = new ZipArchive(new MemoryStream(zipBytes), ZipArchiveMode.Read);
        using var s = zip.GetEntry(name)!.Open();
        using var m = new MemoryStream();
        s.CopyTo(m);
        return m.ToArray();
    }

    /// <summary>A state dict {"Head.weight": tensor} whose one float32 record has the given size and stride.</summary>
    private static byte[] OneTensorPickle(long storageNumel, long size, long stride)
    {
        var p = new PickleWriter();
        p.Proto();
        p.Global("collections", "OrderedDict");
        p.EmptyTuple();
        p.Reduce();
        p.Mark();
        p.Unicode("Head.weight");
        p.Global("torch._utils", "_rebuild_tensor_v2");
        p.Mark();
        p.Mark();
        p.Unicode("storage");
        p.Global("torch", "FloatStorage");
        p.Unicode("0");
        p.Unicode("cpu");
        p.Int(storageNumel);
        p.Tuple();
        p.PersistentId();
        p.Int(0);
        p.IntTuple(new[] { size });
        p.IntTuple(new[] { stride });
        p.Bool(false);
        p.Global("collections", "OrderedDict");
        p.EmptyTuple();
        p.Reduce();
        p.Tuple();
        p.Reduce();
        p.SetItems();
        p.Stop();
        return p.ToArray();
    }

    private static int IndexOf(byte[] haystack, byte[] needle, int from)
    {
        for (int i = Math.Max(0, from); i + needle.Length <= haystack.Length; i++)
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle)) return i;
        return -1;
    }

    /// <summary>The central-directory record (signature PK\1\2) of the entry <paramref name="name"/>.</summary>
    private static int FindLast(byte[] zip, byte[] signature, string name)
    {
        var nameBytes = Encoding.ASCII.GetBytes(name);
        for (int i = zip.Length - signature.Length; i >= 0; i--)
        {
            if (!zip.AsSpan(i, signature.Length).SequenceEqual(signature)) continue;
            int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(zip.AsSpan(i + 28));
            if (zip.AsSpan(i + 46, nameLength).SequenceEqual(nameBytes)) return i;
        }
        throw new InvalidOperationException("no such entry");
    }
}
