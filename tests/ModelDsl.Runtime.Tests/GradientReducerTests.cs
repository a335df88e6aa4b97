using System.Collections.Generic;
using System.IO;
using System.Text.Json;
using ModelDsl.Runtime.Distributed;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// <see cref="GradientReducer"/> in one process: the bucket assignment against real PyTorch's DDP
/// (Oracles/gen_buckets.py → Oracles/buckets.json), and the reduction and overlap machinery against a loopback group
/// that records what it is asked to reduce. The multi-rank numerics are in ProcessGroupTests. Apart from other
/// tests: two models built from one seed must be equal, which a parallel test drawing from the global generator between
/// the seed and the layers would break.
/// </summary>
[Collection(GlobalTorchStateCollection.Name)]
public sealed class GradientReducerTests
{
    [Fact]
    public void BucketAssignment_EqualsPyTorchs_ForEveryOracleCase()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(DistributedSamplerTests.OraclePath("buckets.json")));
        var cases = json.RootElement.GetProperty("cases").EnumerateArray().ToList();
        Assert.True(cases.Count >= 9);
        foreach (var c in cases)
        {
            string name = c.GetProperty("name").GetString()!;
            var parameters = c.GetProperty("params").EnumerateArray()
                .Select(p => empty(p.GetProperty("numel").GetInt64(), dtype: DType(p.GetProperty("dtype").GetString()!)))
                .ToArray();
            long cap = (long)(c.GetProperty("cap_mb").GetDouble() * 1024 * 1024);
            long first = c.GetProperty("first_bytes").GetInt64();
            var buckets = GradientReducer.AssignBuckets(parameters, first, cap);

            var expected = c.GetProperty("buckets").EnumerateArray().Select(b => string.Join(",", b.EnumerateArray().Select(i => i.GetInt32()))).ToArray();
            var actual = buckets.Select(b => string.Join(",", b.ParameterIndices)).ToArray();
            Assert.True(expected.SequenceEqual(actual), $"{name}: expected [{string.Join("] [", expected)}], got [{string.Join("] [", actual)}]");
            var limits = c.GetProperty("limits").EnumerateArray().Select(l => l.GetInt64()).ToArray();
            Assert.True(limits.SequenceEqual(buckets.Select(b => b.CapBytes)), $"{name}: caps");
            foreach (var p in parameters)
                p.Dispose();
        }
    }

    [Fact]
    public void Buckets_HoldOneDtypeEach_AndCountTheirBytes()
    {
        using var a = new Parameter(zeros(300, dtype: ScalarType.Float64));
        using var b = new Parameter(zeros(100));
        using var frozen = new Parameter(zeros(1000), requires_grad: false);
        using var reducer = new GradientReducer(new SingleProcessGroup(), new[] { a, b, frozen, b });
        Assert.Equal(2, reducer.Parameters.Count);
        Assert.Equal(2, reducer.Buckets.Count);
        Assert.All(reducer.Buckets, bucket => Assert.Single(bucket.ParameterIndices));
        Assert.Contains(reducer.Buckets, x => x.Dtype == ScalarType.Float64 && x.Bytes == 2400);
        Assert.Contains(reducer.Buckets, x => x.Dtype == ScalarType.Float32 && x.Bytes == 400);
    }

    [Fact]
    public void BadBucketSizes_AreErrors()
    {
        using var p = new Parameter(zeros(3));
        Assert.Contains("bucket_cap_mb must be positive", Assert.Throws<ArgumentOutOfRangeException>(() => new GradientReducer(new SingleProcessGroup(), new[] { p }, 0)).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => new GradientReducer(new SingleProcessGroup(), new[] { p }, 25, double.NaN));
    }

    [Fact]
    public void Synchronize_ScalesBy1OverWorldSize_SumsPerBucketInOrder_AndCopiesBack()
    {
        var group = new LoopbackGroup(worldSize: 4);
        var model = Model(seed: 1);
        using var reducer = new GradientReducer(group, model.parameters(), bucketSizeMB: 2.0 / 1024, firstBucketSizeMB: 1.0 / 1024);
        Assert.Equal(3, reducer.Buckets.Count);

        Backward(model);
        var before = Flat(model);
        reducer.Synchronize();
        // Each "rank" contributes g/4 and the loopback sums four identical contributions: g again, exactly
        // (multiplying by 1/4 and adding four copies are exact in binary floating point). Without the scaling the
        // result would be 4g.
        Assert.Equal(before.data<float>().ToArray(), Flat(model).data<float>().ToArray());
        Assert.Equal(new[] { 0, 1, 2 }, group.Reduced);
        // Without the overlap hooks, the blocking all-reduce (Open MPI's tuned algorithms) does the work.
        Assert.All(group.NonBlocking, Assert.False);
        Assert.Equal(0, reducer.BucketsStartedDuringBackward);
    }

    [Fact]
    public void ParameterWithoutGradient_ContributesZeros_AndReceivesTheAverage()
    {
        var group = new LoopbackGroup(worldSize: 2);
        using var used = new Parameter(ones(3));
        using var unused = new Parameter(ones(2));
        using var reducer = new GradientReducer(group, new[] { used, unused });
        used.grad = tensor(new float[] { 2, 4, 6 });
        reducer.Synchronize();
        Assert.Equal(new float[] { 2, 4, 6 }, used.grad!.data<float>().ToArray());
        Assert.NotNull(unused.grad);
        Assert.Equal(new float[] { 0, 0 }, unused.grad!.data<float>().ToArray());
    }

    [Fact]
    public void Overlap_StartsBucketsDuringBackward_LastLayerFirst_WithTheSameResult()
    {
        var blockingGroup = new LoopbackGroup(worldSize: 2);
        var blockingModel = Model(seed: 3);
        using var blocking = new GradientReducer(blockingGroup, blockingModel.parameters(), bucketSizeMB: 2.0 / 1024, firstBucketSizeMB: 1.0 / 1024);
        Backward(blockingModel);
        blocking.Synchronize();

        var group = new LoopbackGroup(worldSize: 2);
        var model = Model(seed: 3);
        using var reducer = new GradientReducer(group, model.parameters(), bucketSizeMB: 2.0 / 1024, firstBucketSizeMB: 1.0 / 1024);
        Assert.Equal(3, reducer.EnableOverlap(model));
        Backward(model);
        // The output layer's and the middle layer's buckets went out while backward ran; the first layer's input
        // needs no gradient, so its bucket waits for Synchronize.
        Assert.Equal(new[] { 0, 1 }, group.Reduced);
        reducer.Synchronize();
        Assert.Equal(2, reducer.BucketsStartedDuringBackward);
        Assert.Equal(new[] { 0, 1, 2 }, group.Reduced);
        // With the hooks, every bucket goes non-blocking (even the one started in Synchronize), so that all ranks
        // make the same kind of call whatever fired during their backward.
        Assert.All(group.NonBlocking, Assert.True);
        Assert.Equal(Flat(blockingModel).data<float>().ToArray(), Flat(model).data<float>().ToArray());

        // Evaluation under no_grad leaves the hooks idle, and the next training step starts over.
        using (no_grad())
            model.call(ones(4, 16)).Dispose();
        group.Reduced.Clear();
        model.zero_grad();
        Backward(model);
        Assert.Equal(new[] { 0, 1 }, group.Reduced);
        reducer.Synchronize();
    }

    [Fact]
    public void Overlap_ModuleCalledTwicePerForward_WaitsForSynchronize()
    {
        var group = new LoopbackGroup(worldSize: 2);
        var shared = nn.Linear(8, 8);
        var model = nn.Sequential(("a", shared), ("b", shared));
        using var reducer = new GradientReducer(group, model.parameters());
        reducer.EnableOverlap(model);
        using (var x = ones(2, 8, requires_grad: true))
        using (var loss = model.call(x).sum())
            loss.backward();
        Assert.Empty(group.Reduced);
        reducer.Synchronize();
        Assert.Single(group.Reduced);
    }

    [Fact]
    public void ExtraValues_RideInTheLastBucketsAllReduce_SummedNotAveraged()
    {
        var group = new LoopbackGroup(worldSize: 2); // each all-reduce as if both ranks held the same values
        var model = Model(seed: 6);
        using var reducer = new GradientReducer(group, model.parameters(), bucketSizeMB: 2.0 / 1024, firstBucketSizeMB: 1.0 / 1024);
        Assert.True(reducer.Buckets.Count >= 2);
        Backward(model);
        var gradients = Flat(model).data<float>().ToArray();
        using var extra = tensor(new float[] { 1, 3.5f, -2 });
        reducer.Synchronize(extra);
        Assert.Equal(Enumerable.Range(0, reducer.Buckets.Count), group.Reduced); // no collective of its own
        Assert.Equal(new float[] { 2, 7, -4 }, extra.data<float>().ToArray());   // summed over the two ranks
        Assert.Equal(gradients, Flat(model).data<float>().ToArray());          // averaged: (g + g) / 2
        reducer.Synchronize();                                                  // the plain call carries nothing extra
        Assert.Equal(gradients, Flat(model).data<float>().ToArray());

        using var doubles = tensor(new double[] { 1 });
        Assert.Throws<ArgumentException>(() => reducer.Synchronize(doubles));
        reducer.EnableOverlap(model);
        Assert.Throws<InvalidOperationException>(() => reducer.Synchronize(extra));
    }

    [Fact]
    public void GroupOfOne_SynchronizeAndOverlapAreNoOps()
    {
        var model = Model(seed: 5);
        using var reducer = new GradientReducer(new SingleProcessGroup(), model.parameters());
        Assert.Equal(0, reducer.EnableOverlap(model));
        Backward(model);
        var before = Flat(model).data<float>().ToArray();
        reducer.Synchronize();
        Assert.Equal(before, Flat(model).data<float>().ToArray());
    }

    [Fact]
    public void Checksum_ChangesWithAnyParameterBit_AndBroadcastChecksStructure()
    {
        var a = Model(seed: 7);
        var b = Model(seed: 7);
        Assert.Equal(DataParallel.Checksum(a), DataParallel.Checksum(b));
        using (no_grad())
        {
            var w = b.parameters().First();
            // The smallest possible change: one float's lowest bit.
            using var first = w.view(-1)[0];
            float v = first.item<float>();
            first.fill_(BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(v) ^ 1));
        }
        Assert.NotEqual(DataParallel.Checksum(a), DataParallel.Checksum(b));
        using var group = new SingleProcessGroup();
        Assert.True(DataParallel.RanksInSync(group, a));
        DataParallel.BroadcastParameters(group, a);
    }

    private static Sequential Model(int seed)
    {
        manual_seed(seed);
        // Gradient bytes: fc1 2048 + 128, fc2 4096 + 128, out 1024 + 32. With caps of 1 KiB then 2 KiB, each layer
        // closes its own bucket: [out], [fc2], [fc1].
        return nn.Sequential(("fc1", nn.Linear(16, 32)), ("act1", nn.Tanh()), ("fc2", nn.Linear(32, 32)), ("act2", nn.Tanh()), ("out", nn.Linear(32, 8)));
    }

    private static void Backward(Sequential model)
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        var x = randn(8, 16);
        model.call(x).square().mean().backward();
    }

    private static Tensor Flat(nn.Module model) => cat(model.parameters().Select(p => p.grad!.reshape(-1)).ToArray());

    private static ScalarType DType(string name) => name switch
    {
        "float32" => ScalarType.Float32,
        "float64" => ScalarType.Float64,
        "float16" => ScalarType.Float16,
        "bfloat16" => ScalarType.BFloat16,
        _ => throw new ArgumentException(name),
    };

    /// <summary>
    /// A stand-in for N ranks that all hold this rank's values: a sum multiplies by N. Records each reduction as the
    /// index of its buffer (bucket buffers are numbered in the order first seen) and whether it was non-blocking.
    /// </summary>
    [Fact]
    public void Overlap_WithoutGradientSync_StartsNothing_AndTheLastMicroBatchReducesTheAccumulatedGradients()
    {
        // Two micro-batches (DDP's no_sync() on the first): the blocking reducer on the summed gradients is the oracle.
        var blockingGroup = new LoopbackGroup(worldSize: 2);
        var blockingModel = Model(seed: 4);
        using var blocking = new GradientReducer(blockingGroup, blockingModel.parameters(), bucketSizeMB: 2.0 / 1024, firstBucketSizeMB: 1.0 / 1024);
        Backward(blockingModel);
        Backward(blockingModel);
        blocking.Synchronize();

        var group = new LoopbackGroup(worldSize: 2);
        var model = Model(seed: 4);
        using var reducer = new GradientReducer(group, model.parameters(), bucketSizeMB: 2.0 / 1024, firstBucketSizeMB: 1.0 / 1024);
        reducer.EnableOverlap(model);
        reducer.RequireGradientSync = false;
        Backward(model);
        Assert.Empty(group.Reduced); // the hooks stayed idle through the first micro-batch
        reducer.RequireGradientSync = true;
        Backward(model);
        Assert.Equal(new[] { 0, 1 }, group.Reduced); // the last one's backward starts the buckets, as without accumulation
        reducer.Synchronize();
        Assert.Equal(2, reducer.BucketsStartedDuringBackward);
        Assert.Equal(Flat(blockingModel).data<float>().ToArray(), Flat(model).data<float>().ToArray());
    }
}
