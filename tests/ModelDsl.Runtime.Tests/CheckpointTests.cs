using System.Collections.Generic;
using System.IO;
using ModelDsl.Runtime.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// Checkpoints: an exact round trip of weights, buffers and optimiser state; corruption, truncation, other
/// shapes and other plans are refused with a message naming the file and leave the model untouched; a failed
/// save leaves the previous checkpoint and no temporary file.
/// </summary>
/// <remarks>In the global-torch-state collection: the round trips compare the global RNG state, which a parallel test drawing from the generator would change.</remarks>
[Collection(GlobalTorchStateCollection.Name)]
public sealed class CheckpointTests : IDisposable
{
    private const string Fingerprint = "{\"model\":\"Mlp\",\"lr\":\"0.001\",\"batch_size\":64}";
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "modeldsl-checkpoint-tests", Guid.NewGuid().ToString("N"));

    public CheckpointTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    // Parameters and buffers of two dtypes (BatchNorm's num_batches_tracked is Int64).
    private static nn.Module<Tensor, Tensor> Mlp(int hidden = 128) => nn.Sequential(
        ("Hidden", nn.Linear(64, hidden)),
        ("Norm", nn.BatchNorm1d(hidden)),
        ("Act", nn.ReLU()),
        ("Out", nn.Linear(hidden, 10)));

    private static CheckpointState State(int epoch = 2) => new()
    {
        ModelName = "Mlp",
        PlanFingerprint = Fingerprint,
        Epoch = epoch,
        Step = 30,
        Seed = 7,
        RngState = torch.get_rng_state().data<byte>().ToArray(),
        History = new List<EpochMetrics>
        {
            new() { Epoch = 1, TrainLoss = 2.1, TrainAccuracy = 0.25, ValLoss = 2.0, ValAccuracy = 0.3, LearningRate = 1e-3, Seconds = 1.5, Samples = 640 },
            new() { Epoch = 2, TrainLoss = 1.7, TrainAccuracy = double.NaN, ValLoss = null, ValAccuracy = null, LearningRate = 5e-4, Seconds = 1.25, Samples = 640 },
        },
    };

    private static void Train(nn.Module<Tensor, Tensor> model, OptimizerHelper optimizer, int steps, ulong seed)
    {
        var generator = new Generator(seed);
        model.train();
        for (int i = 0; i < steps; i++)
        {
            using var scope = NewDisposeScope();
            var x = randn(new long[] { 16, 64 }, generator: generator);
            var y = randint(0, 10, new long[] { 16 }, generator: generator);
            var loss = nn.functional.cross_entropy(model.forward(x), y);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
        }
    }

    /// <summary>Every state-dict entry as raw bytes, for bit-for-bit comparison.</summary>
    private static Dictionary<string, byte[]> Snapshot(nn.Module model)
    {
        var result = new Dictionary<string, byte[]>();
        foreach (var (name, tensor) in model.state_dict())
        {
            using var cpu = tensor.detach().cpu().contiguous();
            result[name] = cpu.bytes.ToArray();
        }
        return result;
    }

    private static void AssertIdentical(Dictionary<string, byte[]> expected, Dictionary<string, byte[]> actual)
    {
        Assert.Equal(expected.Keys.OrderBy(k => k), actual.Keys.OrderBy(k => k));
        foreach (var (name, bytes) in expected)
            Assert.True(bytes.AsSpan().SequenceEqual(actual[name]), $"'{name}' differs");
    }

    private string SaveTrained(out nn.Module<Tensor, Tensor> model, out OptimizerHelper optimizer)
    {
        manual_seed(1);
        model = Mlp();
        optimizer = torch.optim.Adam(model.parameters(), 1e-3);
        Train(model, optimizer, steps: 3, seed: 10);
        string path = Path.Combine(_dir, Checkpoint.FileName);
        Checkpoint.Save(path, model, optimizer, State());
        return path;
    }

    private static string[] Leftovers(string directory) =>
        Directory.GetFiles(directory).Where(f => f.Contains(".tmp-", StringComparison.Ordinal)).ToArray();

    [Fact]
    public void RoundTrip_RestoresWeightsBuffersAndState_BitForBit()
    {
        string path = SaveTrained(out var original, out var originalOptimizer);
        using var _ = original;
        var expectedState = State();

        manual_seed(99);
        using var restored = Mlp();
        var restoredOptimizer = torch.optim.Adam(restored.parameters(), 1e-3);
        Assert.NotEqual(Snapshot(original)["Hidden.weight"], Snapshot(restored)["Hidden.weight"]);

        var state = Checkpoint.Load(path, restored, restoredOptimizer, "Mlp", Fingerprint);

        AssertIdentical(Snapshot(original), Snapshot(restored));
        Assert.Equal("Mlp", state.ModelName);
        Assert.Equal(Fingerprint, state.PlanFingerprint);
        Assert.Equal(2, state.Epoch);
        Assert.Equal(30, state.Step);
        Assert.Equal(7, state.Seed);
        Assert.Equal(expectedState.RngState, state.RngState);
        Assert.Equal(expectedState.History, state.History);
        Assert.True(double.IsNaN(state.History[1].TrainAccuracy));
        Assert.Empty(Leftovers(_dir));
    }

    [Fact]
    public void RoundTrip_KeepsTheStrategyState_AndACheckpointWithoutOneHasNull()
    {
        manual_seed(1);
        using var model = Mlp();
        var optimizer = torch.optim.SGD(model.parameters(), 0.1);
        string path = Path.Combine(_dir, Checkpoint.FileName);
        var state = State();
        state.StrategyState = new Dictionary<string, byte[]> { ["outer_momentum"] = new byte[] { 1, 2, 3, 4, 250 } };
        Checkpoint.Save(path, model, optimizer, state);
        var loaded = Checkpoint.Load(path, model, optimizer, "Mlp", Fingerprint);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 250 }, loaded.StrategyState!["outer_momentum"]);

        Checkpoint.Save(path, model, optimizer, State());
        Assert.Null(Checkpoint.Load(path, model, optimizer, "Mlp", Fingerprint).StrategyState);
    }

    [Fact]
    public void RoundTrip_RestoresAdamState_SoTheNextStepIsIdentical()
    {
        string path = SaveTrained(out var original, out var originalOptimizer);
        using var _ = original;

        using var restored = Mlp();
        var restoredOptimizer = torch.optim.Adam(restored.parameters(), 1e-3);
        Checkpoint.Load(path, restored, restoredOptimizer, "Mlp", Fingerprint);

        // Control: the same weights with a fresh Adam take a different step, so the comparison below means something.
        using var fresh = Mlp();
        var freshOptimizer = torch.optim.Adam(fresh.parameters(), 1e-3);
        Checkpoint.Load(path, fresh, torch.optim.Adam(fresh.parameters(), 1e-3), "Mlp", Fingerprint);

        Train(original, originalOptimizer, steps: 2, seed: 20);
        Train(restored, restoredOptimizer, steps: 2, seed: 20);
        Train(fresh, freshOptimizer, steps: 2, seed: 20);

        AssertIdentical(Snapshot(original), Snapshot(restored));
        Assert.False(Snapshot(original)["Hidden.weight"].AsSpan().SequenceEqual(Snapshot(fresh)["Hidden.weight"]));
    }

    [Fact]
    public void RoundTrip_Sgd_WithMomentum()
    {
        manual_seed(3);
        using var model = Mlp();
        var optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum: 0.9);
        Train(model, optimizer, steps: 2, seed: 1);
        string path = Path.Combine(_dir, "sgd.ckpt");
        Checkpoint.Save(path, model, optimizer, State());

        using var restored = Mlp();
        var restoredOptimizer = torch.optim.SGD(restored.parameters(), 0.1, momentum: 0.9);
        Checkpoint.Load(path, restored, restoredOptimizer, "Mlp", Fingerprint);
        Train(model, optimizer, steps: 1, seed: 2);
        Train(restored, restoredOptimizer, steps: 1, seed: 2);
        AssertIdentical(Snapshot(model), Snapshot(restored));
    }

    [Fact]
    public void Save_OverwritesAtomically_AndLatestFindsIt()
    {
        Assert.Null(Checkpoint.Latest(_dir));
        string path = SaveTrained(out var model, out var optimizer);
        using var _ = model;
        Assert.Equal(path, Checkpoint.Latest(_dir));

        Checkpoint.Save(path, model, optimizer, State(epoch: 3));
        Assert.Equal(3, Checkpoint.ReadState(path).Epoch);
        Assert.Equal(new[] { path }, Directory.GetFiles(_dir));
    }

    [Fact]
    public void Save_CreatesTheDirectory()
    {
        manual_seed(1);
        using var model = Mlp();
        var optimizer = torch.optim.AdamW(model.parameters(), 1e-3);
        string path = Path.Combine(_dir, "a", "b", Checkpoint.FileName);
        Checkpoint.Save(path, model, optimizer, State());
        Assert.Equal(2, Checkpoint.ReadState(path).Epoch);
    }

    public static IEnumerable<object[]> Damages() => new[]
    {
        new object[] { "flip a byte in the middle" },
        new object[] { "flip the last byte" },
        new object[] { "truncate to half" },
        new object[] { "truncate by one byte" },
        new object[] { "append a byte" },
    };

    [Theory]
    [MemberData(nameof(Damages))]
    public void DamagedFile_IsRefused_NamingTheFile_AndTheModelIsUntouched(string damage)
    {
        string path = SaveTrained(out var original, out _);
        original.Dispose();
        byte[] bytes = File.ReadAllBytes(path);
        string damaged = Path.Combine(_dir, "epoch-3.ckpt");
        switch (damage)
        {
            case "flip a byte in the middle": bytes[bytes.Length / 2] ^= 0x40; break;
            case "flip the last byte": bytes[^1] ^= 0x01; break;
            case "truncate to half": bytes = bytes[..(bytes.Length / 2)]; break;
            case "truncate by one byte": bytes = bytes[..^1]; break;
            case "append a byte": bytes = bytes.Append((byte)0).ToArray(); break;
        }
        File.WriteAllBytes(damaged, bytes);

        manual_seed(5);
        using var model = Mlp();
        var optimizer = torch.optim.Adam(model.parameters(), 1e-3);
        var before = Snapshot(model);

        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(damaged, model, optimizer, "Mlp", Fingerprint));
        Assert.Equal(damaged, e.Path);
        Assert.Equal($"Checkpoint {damaged} is corrupt (checksum mismatch; the file was truncated or altered)", e.Message);
        AssertIdentical(before, Snapshot(model));
        Assert.Throws<CheckpointException>(() => Checkpoint.ReadState(damaged));
    }

    [Fact]
    public void NotACheckpoint_IsRefused()
    {
        string path = Path.Combine(_dir, "notes.ckpt");
        File.WriteAllText(path, "these are not the weights you are looking for");
        using var model = Mlp();
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path, model, torch.optim.Adam(model.parameters(), 1e-3), "Mlp", Fingerprint));
        Assert.Contains($"{path} is not a ModelDsl checkpoint", e.Message);

        File.WriteAllBytes(path, Array.Empty<byte>());
        e = Assert.Throws<CheckpointException>(() => Checkpoint.ReadState(path));
        Assert.Contains("is corrupt", e.Message);
    }

    [Fact]
    public void MissingFile_IsRefused()
    {
        string path = Path.Combine(_dir, "nothing.ckpt");
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.ReadState(path));
        Assert.Equal($"There is no checkpoint at {path}", e.Message);
        Assert.IsType<FileNotFoundException>(e.InnerException);
    }

    [Fact]
    public void ShapeMismatch_NamesTheParameterAndBothShapes_AndTheModelIsUntouched()
    {
        string path = SaveTrained(out var original, out _);
        original.Dispose();

        manual_seed(5);
        using var wider = Mlp(hidden: 256);
        var optimizer = torch.optim.Adam(wider.parameters(), 1e-3);
        var before = Snapshot(wider);

        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path, wider, optimizer, "Mlp", Fingerprint));
        Assert.Equal(path, e.Path);
        Assert.StartsWith($"Checkpoint {path} does not fit model 'Mlp': ", e.Message);
        Assert.Contains("parameter 'Hidden.weight' is [128, 64] in the checkpoint but [256, 64] in the model", e.Message);
        Assert.Contains("parameter 'Out.weight' is [10, 128] in the checkpoint but [10, 256] in the model", e.Message);
        Assert.Contains("buffer 'Norm.running_mean' is [128] in the checkpoint but [256] in the model", e.Message);
        AssertIdentical(before, Snapshot(wider));
    }

    [Fact]
    public void MissingAndExtraParameters_AreNamed()
    {
        string path = SaveTrained(out var original, out _);
        original.Dispose();

        using var other = nn.Sequential(("Hidden", nn.Linear(64, 128)), ("Head", nn.Linear(128, 10)));
        var e = Assert.Throws<CheckpointException>(() =>
            Checkpoint.Load(path, other, torch.optim.Adam(other.parameters(), 1e-3), "Mlp", Fingerprint));
        Assert.Contains("parameter 'Out.weight' [10, 128] is in the checkpoint but not in the model", e.Message);
        Assert.Contains("parameter 'Head.bias' [10] is in the model but not in the checkpoint", e.Message);
        Assert.Contains("buffer 'Norm.num_batches_tracked' [] is in the checkpoint but not in the model", e.Message);
    }

    [Fact]
    public void DifferentPlan_SaysWhichSettingsDiffer()
    {
        string path = SaveTrained(out var original, out _);
        original.Dispose();
        using var model = Mlp();
        var optimizer = torch.optim.Adam(model.parameters(), 1e-3);
        var before = Snapshot(model);

        string other = "{\"model\":\"Mlp\",\"lr\":\"0.01\",\"batch_size\":64,\"clip\":\"1\"}";
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path, model, optimizer, "Mlp", other));
        Assert.Equal(path, e.Path);
        Assert.Equal(
            $"Checkpoint {path} was written for a different training plan: 'lr' is 0.001 in the checkpoint but 0.01 in this run; " +
            "'clip' is not set in the checkpoint but is 1 in this run. Resume with the checkpoint's settings, or start a new run.",
            e.Message);
        AssertIdentical(before, Snapshot(model));

        // A fingerprint that is not JSON is shown whole.
        e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path, model, optimizer, "Mlp", "sha:1234"));
        Assert.Contains("the checkpoint's plan is '" + Fingerprint + "', this run's is 'sha:1234'", e.Message);
    }

    [Fact]
    public void OtherModelOrOptimizer_IsRefused()
    {
        string path = SaveTrained(out var original, out _);
        original.Dispose();
        using var model = Mlp();

        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path, model, torch.optim.Adam(model.parameters(), 1e-3), "Cnn", Fingerprint));
        Assert.Equal($"Checkpoint {path} was written for model 'Mlp', not 'Cnn'", e.Message);

        e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path, model, torch.optim.SGD(model.parameters(), 0.1), "Mlp", Fingerprint));
        Assert.Equal($"Checkpoint {path} holds Adam optimiser state, but the optimiser here is SGD", e.Message);
    }

    private static byte[] OptimizerBytes(OptimizerHelper optimizer)
    {
        using var memory = new MemoryStream();
        using (var writer = new BinaryWriter(memory, System.Text.Encoding.UTF8, leaveOpen: true))
            optimizer.save_state_dict(writer);
        return memory.ToArray();
    }

    [Fact]
    public void ALoadThatLibtorchRejects_PutsTheModelAndOptimizerBack()
    {
        string path = SaveTrained(out var original, out _);
        original.Dispose();

        // A well-formed file (correct checksum, matching metadata) whose optimiser section is cut short: every
        // check passes, the weights load, and only then does the optimiser state fail to read.
        byte[] bytes = File.ReadAllBytes(path);
        int metadataLength = BitConverter.ToInt32(bytes, 12);
        int modelLengthAt = 16 + metadataLength;
        long modelLength = BitConverter.ToInt64(bytes, modelLengthAt);
        int optimizerLengthAt = modelLengthAt + 8 + (int)modelLength;
        var forged = bytes[..(optimizerLengthAt + 8 + 4)];
        BitConverter.GetBytes(4L).CopyTo(forged, optimizerLengthAt);
        forged = forged.Concat(System.Security.Cryptography.SHA256.HashData(forged)).ToArray();
        string damaged = Path.Combine(_dir, "forged.ckpt");
        File.WriteAllBytes(damaged, forged);

        manual_seed(5);
        using var model = Mlp();
        var optimizer = torch.optim.Adam(model.parameters(), 1e-3);
        Train(model, optimizer, steps: 1, seed: 3);
        var before = Snapshot(model);
        var optimizerBefore = OptimizerBytes(optimizer);

        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(damaged, model, optimizer, "Mlp", Fingerprint));
        Assert.StartsWith($"Could not load checkpoint {damaged}: ", e.Message);
        Assert.EndsWith("(the model and optimiser are unchanged)", e.Message);
        AssertIdentical(before, Snapshot(model));
        Assert.Equal(optimizerBefore, OptimizerBytes(optimizer));
    }

    /// <summary>A model whose state dictionary cannot be read after <see cref="AllowedCalls"/> calls: a write that fails half-way.</summary>
    private sealed class FailingModel : nn.Module<Tensor, Tensor>
    {
        private readonly Linear _inner;
        public int Calls;
        public int AllowedCalls = int.MaxValue;

        public FailingModel() : base(nameof(FailingModel))
        {
            _inner = nn.Linear(4, 2);
            RegisterComponents();
        }

        public override Tensor forward(Tensor input) => _inner.forward(input);

        public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null)
        {
            if (++Calls > AllowedCalls) throw new IOException("No space left on device (simulated)");
            return base.state_dict(destination, prefix);
        }
    }

    [Fact]
    public void FailedSave_LeavesThePreviousCheckpointAndNoTemporaryFile()
    {
        using var model = new FailingModel();
        var optimizer = torch.optim.Adam(model.parameters(), 1e-3);
        string path = Path.Combine(_dir, Checkpoint.FileName);
        Checkpoint.Save(path, model, optimizer, State(epoch: 1));
        byte[] previous = File.ReadAllBytes(path);

        // Save reads the state dictionary once for the metadata and once more while writing the weights:
        // the second read fails after the header is already in the temporary file.
        model.AllowedCalls = model.Calls + 1;
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Save(path, model, optimizer, State(epoch: 2)));
        Assert.Equal(path, e.Path);
        Assert.Contains("No space left on device (simulated)", e.Message);
        Assert.Equal(model.Calls, model.AllowedCalls + 1);

        Assert.Equal(previous, File.ReadAllBytes(path));
        Assert.Equal(1, Checkpoint.ReadState(path).Epoch);
        Assert.Empty(Leftovers(_dir));
    }

    [Fact]
    public void FailedSave_WhenTheDirectoryIsAFile()
    {
        string file = Path.Combine(_dir, "not-a-directory");
        File.WriteAllText(file, "x");
        using var model = Mlp();
        string path = Path.Combine(file, Checkpoint.FileName);

        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Save(path, model, torch.optim.Adam(model.parameters(), 1e-3), State()));
        Assert.Equal(path, e.Path);
        Assert.StartsWith($"Could not write checkpoint {path}: ", e.Message);
        Assert.Equal("x", File.ReadAllText(file));
        Assert.Empty(Leftovers(_dir));
    }

    [Fact]
    public void FailedSave_WhenTheRenameFails_RemovesTheTemporaryFile()
    {
        // The target is a non-empty directory: everything is written, then the rename over it fails.
        string path = Path.Combine(_dir, Checkpoint.FileName);
        Directory.CreateDirectory(path);
        File.WriteAllText(Path.Combine(path, "keep"), "x");
        using var model = Mlp();

        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Save(path, model, torch.optim.Adam(model.parameters(), 1e-3), State()));
        Assert.Equal(path, e.Path);
        Assert.Empty(Leftovers(_dir));
        Assert.Equal("x", File.ReadAllText(Path.Combine(path, "keep")));
    }
}
