using System.Collections.Generic;
using System.IO;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using TensorDataset = ModelDsl.Runtime.Data.TensorDataset;
using ModelDsl.Runtime.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// Sharded checkpoints in-process: two "ranks" on two threads (an in-memory all-reduce) write their shards and rank 0
/// the index; the shards hold each owner's parameters and optimiser state; consolidation gives back the trained
/// weights and exactly the optimiser's serialised state; missing, damaged and foreign shards are refused naming the
/// file. The multi-rank tests (the TestHost's <c>zero</c> job, <c>DataParallelEndToEndTests</c>) do the same through
/// the real strategy and mpirun.
/// </summary>
public sealed class ShardedCheckpointTests : IDisposable
{
    private const string Fingerprint = "{\"Lr\":\"0.001\",\"WorldSize\":\"2\"}";
    private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-sharded-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private string Index => Path.Combine(_dir, Checkpoint.FileName);

    // Hidden.weight (8,192 elements) is rank 0's; the other parameters (1,674) rank 1's; BatchNorm's buffers rank 0's.
    private static nn.Module<Tensor, Tensor> Mlp(int hidden = 128)
    {
        manual_seed(5);
        return nn.Sequential(("Hidden", nn.Linear(64, hidden)), ("Norm", nn.BatchNorm1d(hidden)), ("Act", nn.ReLU()), ("Out", nn.Linear(hidden, 10)));
    }

    private static (nn.Module<Tensor, Tensor> Model, OptimizerHelper Optimizer) Trained()
    {
        var model = Mlp();
        var optimizer = torch.optim.Adam(model.parameters(), 0.01);
        var generator = new Generator(3);
        for (int i = 0; i < 4; i++)
        {
            using var scope = NewDisposeScope();
            var x = randn(new long[] { 16, 64 }, generator: generator);
            var y = randint(0, 10, new long[] { 16 }, generator: generator);
            optimizer.zero_grad();
            nn.functional.cross_entropy(model.forward(x), y).backward();
            optimizer.step();
        }
        return (model, optimizer);
    }

    private static CheckpointState State(int epoch = 1) => new() { ModelName = "Mlp", PlanFingerprint = Fingerprint, Epoch = epoch, Step = 4 * epoch, Seed = 1 };

    /// <summary>Both ranks save (each its own trained copy, identical): rank r's shard, then rank 0's index.</summary>
    private void SaveOnTwoRanks(int epoch = 1)
    {
        var ranks = new ThreadRanks();
        var copies = new[] { Trained(), Trained() }; // one after the other: the seed is global
        Parallel.For(0, 2, new ParallelOptions { MaxDegreeOfParallelism = 2 }, rank =>
            ShardedCheckpoint.Save(Index, copies[rank].Model, copies[rank].Optimizer, State(epoch), new FakeRank(ranks, rank), ShardLevel.Gradients));
        foreach (var (model, optimizer) in copies)
        {
            optimizer.Dispose();
            model.Dispose();
        }
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    private static byte[] OptimizerBytes(OptimizerHelper optimizer)
    {
        using var memory = new MemoryStream();
        using (var writer = new BinaryWriter(memory, Encoding.UTF8, leaveOpen: true)) optimizer.save_state_dict(writer);
        return memory.ToArray();
    }

    [Fact]
    public void TwoRanks_WriteTheirShardsAndAnIndex_ThatConsolidatesToTheTrainedWeightsAndOptimiserState()
    {
        SaveOnTwoRanks();
        Assert.True(ShardedCheckpoint.IsSharded(Index));
        var info = ShardedCheckpoint.Info(Index);
        Assert.Equal((2, "gradients", 1, 4L), (info.WorldSize, info.Shard, info.Epoch, info.Step));
        Assert.Equal(2, info.Shards.Count);
        Assert.Matches(@"checkpoint\.ckpt\.[0-9a-f]{10}\.shard-1-of-2$", info.Shards[1]);
        Assert.Equal(new[] { Checkpoint.FileName }.Concat(info.Shards.Select(Path.GetFileName)).Order(), Directory.GetFiles(_dir).Select(Path.GetFileName).Order());
        // Rank 0 owns the 8,192-element weight (4 bytes, and Adam's two moments), rank 1 the other 1,674 elements.
        Assert.InRange(new FileInfo(info.Shards[0]).Length, 8192 * 12, 8192 * 12 + 8_000);
        Assert.InRange(new FileInfo(info.Shards[1]).Length, 1674 * 12, 1674 * 12 + 8_000);

        var (trained, trainedOptimizer) = Trained();
        using var model = Mlp(hidden: 128);
        using var optimizer = torch.optim.Adam(model.parameters(), 0.5);
        var whole = Path.Combine(_dir, "whole", "checkpoint.ckpt");
        ShardedCheckpoint.Consolidate(Index, whole, model, optimizer, "Mlp");
        foreach (var ((name, expected), (_, got)) in trained.state_dict().Zip(model.state_dict()))
            Assert.True(Same(expected, got), $"{name} differs after consolidation");
        Assert.Equal(OptimizerBytes(trainedOptimizer), OptimizerBytes(optimizer));

        // The whole checkpoint is the ordinary format, and loads as any other.
        Assert.False(ShardedCheckpoint.IsSharded(whole));
        using var again = Mlp(hidden: 128);
        using var againOptimizer = torch.optim.Adam(again.parameters(), 0.5);
        var state = Checkpoint.Load(whole, again, againOptimizer, "Mlp", Fingerprint);
        Assert.Equal((1, 4L), (state.Epoch, state.Step));
        Assert.Equal(OptimizerBytes(trainedOptimizer), OptimizerBytes(againOptimizer));
        trained.Dispose();
        trainedOptimizer.Dispose();
    }

    [Fact]
    public void ASecondSave_ReplacesTheFirstsShards_AndTheLoadersReadTheIndexDirectly()
    {
        SaveOnTwoRanks(epoch: 1);
        var first = ShardedCheckpoint.Info(Index).Shards;
        // What a save that crashed before its index would leave: a shard and a temporary file no index names. A file
        // that only looks similar is not the checkpoint's.
        string[] strays = { Index + ".00000000ab.shard-1-of-2", Index + ".00000000ab.shard-0-of-2.tmp-4242" };
        foreach (var stray in strays) File.WriteAllText(stray, "partial");
        string unrelated = Index + ".notes.shard-0-of-2";
        File.WriteAllText(unrelated, "mine");
        SaveOnTwoRanks(epoch: 2);
        var second = ShardedCheckpoint.Info(Index).Shards;
        Assert.Empty(first.Intersect(second));
        Assert.All(first, f => Assert.False(File.Exists(f), $"{f} outlived the save that replaced it"));
        Assert.All(strays, f => Assert.False(File.Exists(f), $"{f} (a crashed save's) outlived the next save"));
        File.Delete(unrelated);
        Assert.Equal(3, Directory.GetFiles(_dir).Length);

        Assert.Equal(2, Checkpoint.ReadState(Index).Epoch);
        Assert.Equal(Inference.ModelFileFormat.Checkpoint, Inference.ModelLoader.DetectFormat(Index));
        var (trained, trainedOptimizer) = Trained();
        using var model = Inference.ModelLoader.Load(Index, () => Mlp(), "Mlp");
        foreach (var ((name, expected), (_, got)) in trained.state_dict().Zip(model.state_dict()))
            Assert.True(Same(expected, got), $"{name} differs");

        // Resuming at another world size is refused, pointing at consolidate.
        using var other = Mlp();
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(Index, other, torch.optim.Adam(other.parameters(), 0.01), "Mlp", "{\"Lr\":\"0.001\",\"WorldSize\":\"1\"}"));
        Assert.Contains("'WorldSize' is 2 in the checkpoint but 1 in this run", e.Message);
        Assert.Contains("--world-size 1", e.Message);

        // Consolidating onto the index itself: one whole file, the shards gone; --world-size rewrites the fingerprint.
        ShardedCheckpoint.Consolidate(Index, Index, other, torch.optim.Adam(other.parameters(), 0.01), "Mlp", worldSize: 1);
        Assert.Single(Directory.GetFiles(_dir));
        Assert.Equal("{\"Lr\":\"0.001\",\"WorldSize\":\"1\"}", Checkpoint.ReadState(Index).PlanFingerprint);
        trained.Dispose();
        trainedOptimizer.Dispose();
    }

    [Fact]
    public void MissingDamagedAndForeignShards_AreRefusedNamingTheFile()
    {
        SaveOnTwoRanks(epoch: 1);
        var old = ShardedCheckpoint.Info(Index).Shards;
        var kept = old.Select(f => File.ReadAllBytes(f)).ToList();
        SaveOnTwoRanks(epoch: 2);
        var shards = ShardedCheckpoint.Info(Index).Shards;
        string Error() => Assert.Throws<Inference.ModelFileException>(() => { using var m = Mlp(); Inference.ModelLoader.LoadInto(m, Index, "Mlp"); }).Message;

        // A shard of the earlier save under this save's name.
        File.WriteAllBytes(shards[1], kept[1]);
        Assert.Equal($"Checkpoint shard {shards[1]} (rank 1 of 2, named by {Index}) belongs to another checkpoint (rank 1 of 2, save {Path.GetFileName(old[1]).Split('.')[2]}; the index names save {Path.GetFileName(shards[1]).Split('.')[2]})", Error());

        var bytes = File.ReadAllBytes(shards[0]);
        bytes[bytes.Length / 2] ^= 0x10;
        File.WriteAllBytes(shards[0], bytes);
        Assert.Equal($"Checkpoint shard {shards[0]} (rank 0 of 2, named by {Index}) is corrupt (checksum mismatch; the file was truncated or altered)", Error());

        File.Delete(shards[0]);
        Assert.Equal($"Checkpoint shard {shards[0]} (rank 0 of 2, named by {Index}) is missing: the checkpoint is incomplete", Error());

        var index = File.ReadAllBytes(Index);
        File.WriteAllBytes(Index, index.AsSpan(0, index.Length - 5).ToArray());
        Assert.Equal($"Checkpoint {Index} is corrupt (checksum mismatch; the file was truncated or altered)", Error());
    }

    [Fact]
    public void AnotherModel_IsRefusedBeforeAnythingIsLoaded()
    {
        SaveOnTwoRanks();
        using var narrow = Mlp(hidden: 64);
        var before = narrow.state_dict().Select(kv => kv.Value.clone()).ToList();
        var e = Assert.Throws<CheckpointException>(() => ShardedCheckpoint.Consolidate(Index, Path.Combine(_dir, "x.ckpt"), narrow, torch.optim.Adam(narrow.parameters(), 0.01), "Mlp"));
        Assert.Contains("does not fit model 'Mlp': parameter 'Hidden.weight' is [128, 64] in the checkpoint but [64, 64] in the model", e.Message);
        Assert.All(narrow.state_dict().Zip(before), pair => Assert.True(Same(pair.First.Value, pair.Second)));
        Assert.False(File.Exists(Path.Combine(_dir, "x.ckpt")));
    }

    /// <summary>An all-reduce of doubles between two threads.</summary>
    private sealed class ThreadRanks
    {
        private readonly Barrier _barrier = new(2);
        private readonly double[][] _slots = new double[2][];

        public void Sum(int rank, double[] values)
        {
            _slots[rank] = (double[])values.Clone();
            _barrier.SignalAndWait();
            for (int i = 0; i < values.Length; i++) values[i] = _slots[0][i] + _slots[1][i];
            _barrier.SignalAndWait();
        }
    }

    /// <summary>One of the two ranks: only what a sharded checkpoint uses (the rank, the world size, the sum).</summary>
    private sealed class FakeRank(ThreadRanks ranks, int rank) : ITrainingStrategy, IShardedCheckpoints
    {
        public int Rank => rank;
        public int WorldSize => 2;
        public ShardLevel Level => ShardLevel.Gradients;
        public void SumAcrossRanks(double[] values) => ranks.Sum(rank, values);
        public void Start(nn.Module model, long stepsTaken) => throw new NotSupportedException();
        public long BatchCount(TensorDataset data, int batchSize) => throw new NotSupportedException();
        public IEnumerable<(Tensor X, Tensor Y)> Batches(TensorDataset data, int batchSize, long seed, int epoch) => throw new NotSupportedException();
        public bool AllFinite(bool finite) => finite;
        public void SynchronizeGradients(nn.Module model) { }
        public Divergence? AfterStep(nn.Module model, long step, double loss, bool applied) => null;
        public Divergence? EndEpoch(nn.Module model) => null;
        public Dictionary<string, byte[]>? SaveState() => null;
        public void RestoreState(IReadOnlyDictionary<string, byte[]>? state) { }
        public void Finish(nn.Module model, TrainingReport report) { }
        public void Dispose() { }
    }
}
