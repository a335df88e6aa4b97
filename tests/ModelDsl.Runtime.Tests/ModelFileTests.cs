using System.IO;
using System.Text;
using System.Text.Json;
using ModelDsl.Runtime.Inference;
using ModelDsl.Runtime.Tests.Interop;
using ModelDsl.Runtime.Training;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>Generated Load(path) over the three model files, the formats themselves, and the errors of a misfit.</summary>
[Collection(GlobalTorchStateCollection.Name)]
public sealed class ModelFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-files-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private static readonly Tensor Input = linspace(-2, 2, 3 * 36).reshape(3, 1, 6, 6);

    [Fact]
    public void Load_OfATrainingCheckpoint_TakesOnlyTheWeights_EvenOfAnotherPlan()
    {
        using var trained = InteropCnn.WithFixedWeights();
        var path = Path.Combine(_dir, Checkpoint.FileName);
        var optimizer = optim.SGD(trained.parameters(), 0.1);
        // A plan fingerprint no current plan has: inference must not care.
        Checkpoint.Save(path, trained, optimizer, new CheckpointState { ModelName = nameof(InteropCnn), PlanFingerprint = "{\"LearningRate\":\"123\"}", Epoch = 4 });

        using var loaded = InteropCnn.Load(path);
        Assert.False(loaded.training);
        AssertSameState(trained, loaded);
        // Loading turns NNPACK off: where it cannot initialise, libtorch warned on every batch-1 convolution.
        Assert.Equal(false, Internal.LibTorchContext.NnpackEnabled);
        trained.eval();
        Assert.Equal(trained.call(Input).data<float>().ToArray(), loaded.call(Input).data<float>().ToArray());
    }

    [Theory]
    [InlineData(ModelFileFormat.PyTorch, "m.pt")]
    [InlineData(ModelFileFormat.SafeTensors, "m.safetensors")]
    public void Load_OfAnExportedFile_GivesTheSameModel(ModelFileFormat format, string name)
    {
        using var original = InteropCnn.WithFixedWeights();
        var path = Path.Combine(_dir, name);
        ModelLoader.Export(original, path, format, nameof(InteropCnn));
        Assert.Equal(format, ModelLoader.DetectFormat(path));

        using var loaded = InteropCnn.Load(path);
        Assert.False(loaded.training);
        AssertSameState(original, loaded);
    }

    [Theory]
    [InlineData(ModelFileFormat.PyTorch)]
    [InlineData(ModelFileFormat.SafeTensors)]
    public void Export_IsDeterministic(ModelFileFormat format)
    {
        using var model = InteropCnn.WithFixedWeights();
        var a = Path.Combine(_dir, "a");
        var b = Path.Combine(_dir, "b");
        ModelLoader.Export(model, a, format, nameof(InteropCnn));
        ModelLoader.Export(model, b, format, nameof(InteropCnn));
        Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(b));
    }

    [Fact]
    public void SafeTensorsHeader_FollowsTheFormat()
    {
        using var model = InteropCnn.WithFixedWeights();
        var path = Path.Combine(_dir, "m.safetensors");
        ModelLoader.Export(model, path, ModelFileFormat.SafeTensors, nameof(InteropCnn));
        byte[] bytes = File.ReadAllBytes(path);
        long headerLength = BitConverter.ToInt64(bytes, 0);
        Assert.Equal(0, headerLength % 8);
        using var header = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, (int)headerLength));
        var root = header.RootElement;
        Assert.Equal("InteropCnn", root.GetProperty("__metadata__").GetProperty(ModelLoader.ModelNameKey).GetString());
        var bias = root.GetProperty("Head.bias");
        Assert.Equal("F32", bias.GetProperty("dtype").GetString());
        Assert.Equal(new[] { 5 }, bias.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()));
        var offsets = bias.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        Assert.Equal(20, offsets[1] - offsets[0]);
        var count = root.GetProperty("Norm.num_batches_tracked");
        Assert.Equal("I64", count.GetProperty("dtype").GetString());
        Assert.Empty(count.GetProperty("shape").EnumerateArray());
        // The bias bytes are where the header says.
        var expected = model.Head.bias!.data<float>().ToArray();
        var stored = MemoryMarshalFloats(bytes, 8 + headerLength + offsets[0], 5);
        Assert.Equal(expected, stored);
    }

    [Fact]
    public void Mismatch_NamesTheFirstDifferingParameter()
    {
        using var wide = new InteropCnnWide();
        var path = Path.Combine(_dir, "wide.pt");
        ModelLoader.Export(wide, path, ModelFileFormat.PyTorch, nameof(InteropCnnWide));

        var e = Assert.Throws<ModelFileException>(() => InteropCnn.Load(path));
        Assert.Equal($"{path} does not fit InteropCnn: parameter 'Head.weight' is [6, 36] in the file but [5, 36] in InteropCnn " +
                     "(1 more difference: parameter 'Head.bias' is [6] in the file but [5] in InteropCnn)", e.Message);
    }

    [Fact]
    public void FileOfAnotherModel_IsRefused_NamingBoth()
    {
        using var wide = new InteropCnnWide();
        var path = Path.Combine(_dir, "wide.safetensors");
        ModelLoader.Export(wide, path, ModelFileFormat.SafeTensors, nameof(InteropCnnWide));
        var e = Assert.Throws<ModelFileException>(() => InteropCnn.Load(path));
        Assert.StartsWith($"{path} holds the weights of model 'InteropCnnWide', not 'InteropCnn': parameter 'Head.weight'", e.Message);

        var checkpoint = Path.Combine(_dir, "wide.ckpt");
        Checkpoint.Save(checkpoint, wide, optim.SGD(wide.parameters(), 0.1), new CheckpointState { ModelName = nameof(InteropCnnWide) });
        e = Assert.Throws<ModelFileException>(() => InteropCnn.Load(checkpoint));
        Assert.Contains("holds the weights of model 'InteropCnnWide', not 'InteropCnn'", e.Message);
    }

    [Fact]
    public void MissingTensor_IsNamed()
    {
        using var model = InteropCnn.WithFixedWeights();
        var path = Path.Combine(_dir, "partial.safetensors");
        SafeTensors.Save(model.state_dict().Where(kv => kv.Key != "Norm.running_var").Select(kv => (kv.Key, kv.Value)), path);
        var e = Assert.Throws<ModelFileException>(() => InteropCnn.Load(path));
        Assert.Equal($"{path} does not fit InteropCnn: buffer 'Norm.running_var' [4] is in InteropCnn but not in the file", e.Message);
    }

    [Theory]
    [InlineData(new byte[0], "is empty")]
    [InlineData(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, "is not a model file ModelDsl reads")]
    [InlineData(new byte[] { 0x80, 2, 0x8a, 0x0a }, "legacy format")]
    public void NotAModelFile_IsOneClearError(byte[] content, string expected)
    {
        var path = Path.Combine(_dir, "junk.bin");
        File.WriteAllBytes(path, content);
        var e = Assert.Throws<ModelFileException>(() => InteropCnn.Load(path));
        Assert.Contains(expected, e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void MissingFile_IsOneClearError()
    {
        var path = Path.Combine(_dir, "none.pt");
        var e = Assert.Throws<ModelFileException>(() => InteropCnn.Load(path));
        Assert.Equal($"There is no model file at {path}", e.Message);
    }

    [Fact]
    public void TruncatedPyTorchFile_IsOneClearError()
    {
        using var model = InteropCnn.WithFixedWeights();
        var path = Path.Combine(_dir, "cut.pt");
        ModelLoader.Export(model, path, ModelFileFormat.PyTorch, nameof(InteropCnn));
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes.AsSpan(0, bytes.Length / 2).ToArray());
        var e = Assert.ThrowsAny<Exception>(() => InteropCnn.Load(path));
        Assert.IsType<ModelFileException>(e);
        Assert.Contains(path, e.Message);
    }

    internal static void AssertSameState(nn.Module expected, nn.Module actual)
    {
        var a = expected.state_dict();
        var b = actual.state_dict();
        Assert.Equal(a.Keys, b.Keys);
        foreach (var (name, tensor) in a)
        {
            Assert.Equal(tensor.shape, b[name].shape);
            Assert.Equal(tensor.dtype, b[name].dtype);
            Assert.True(tensor.eq(b[name]).all().item<bool>(), $"{name} differs");
        }
    }

    private static float[] MemoryMarshalFloats(byte[] bytes, long offset, int count)
    {
        var result = new float[count];
        Buffer.BlockCopy(bytes, (int)offset, result, 0, count * 4);
        return result;
    }
}
