using System.IO;
using System.Security.Cryptography;
using System.Text.Json;
using ModelDsl.Runtime.Inference;
using ModelDsl.Runtime.Tests.Interop;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// Real PyTorch (1.13, Debian's python3-torch) as the oracle for model files, through vectors that
/// Interop/pytorch_interop.py wrote: a file torch.save wrote loads here and computes what PyTorch computed, and the
/// files exported here — byte for byte, by their SHA-256 — loaded into the equivalent PyTorch module with
/// load_state_dict(strict=True) and computed what this model computes. Regenerate: see docs/inference.md.
/// </summary>
[Collection(GlobalTorchStateCollection.Name)]
public sealed class PyTorchInteropTests
{
    private static readonly string InteropDir = Path.Combine(TrainingEndToEndTests.RepoRoot(), "tests", "ModelDsl.Runtime.Tests", "Interop");
    private static readonly JsonElement Vectors = JsonDocument.Parse(File.ReadAllText(Path.Combine(InteropDir, "pytorch_vectors.json"))).RootElement;

    private static Tensor Inputs()
    {
        var inputs = Vectors.GetProperty("inputs");
        return tensor(inputs.GetProperty("values").EnumerateArray().Select(v => v.GetSingle()).ToArray(),
            inputs.GetProperty("shape").EnumerateArray().Select(v => v.GetInt64()).ToArray());
    }

    private static float[] Floats(JsonElement e) => e.EnumerateArray().Select(v => v.GetSingle()).ToArray();

    [Fact]
    public void StateDictSavedByTorchSave_Loads_AndComputesWhatPyTorchComputed()
    {
        var import = Vectors.GetProperty("import");
        var path = Path.Combine(InteropDir, import.GetProperty("file").GetString()!);
        Assert.Equal(import.GetProperty("sha256").GetString(), Sha256(path));

        using var model = InteropCnn.Load(path);
        Assert.Equal(11, model.Norm.num_batches_tracked!.item<long>());
        var output = model.call(Inputs()).data<float>().ToArray();
        AssertClose(Floats(import.GetProperty("outputs")), output);
        Assert.Equal(Floats(import.GetProperty("outputs")).Length / 5, model.Predict(Inputs()).shape[0]);
    }

    [Theory]
    [InlineData("pytorch", ModelFileFormat.PyTorch, ".pt")]
    [InlineData("safetensors", ModelFileFormat.SafeTensors, ".safetensors")]
    public void ExportedFile_IsWhatPyTorchLoaded_AndComputedTheSame(string kind, ModelFileFormat format, string extension)
    {
        using var model = InteropCnn.WithFixedWeights();
        var dir = Directory.CreateTempSubdirectory("modeldsl-interop-").FullName;
        try
        {
            var path = Path.Combine(dir, "interop_cnn_export" + extension);
            ModelLoader.Export(model, path, format, nameof(InteropCnn));
            // To regenerate the vectors: keep the exported files, then run pytorch_interop.py check-export on them.
            if (Environment.GetEnvironmentVariable("MODELDSL_INTEROP_EXPORT_DIR") is { Length: > 0 } keep)
                File.Copy(path, Path.Combine(keep, Path.GetFileName(path)), overwrite: true);

            var seen = Vectors.GetProperty("export").GetProperty(kind);
            Assert.Equal(seen.GetProperty("sha256").GetString(), Sha256(path));
            Assert.Equal(5, seen.GetProperty("num_batches_tracked").GetInt64());
            model.eval();
            AssertClose(Floats(seen.GetProperty("outputs")), model.call(Inputs()).data<float>().ToArray());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static void AssertClose(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5f + 1e-5f * Math.Abs(expected[i]), $"output {i}: PyTorch {expected[i]}, here {actual[i]}");
    }

    private static string Sha256(string path) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));
}
