using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using ModelDsl.Runtime.Data;
using System.Globalization;
using ModelDsl.Runtime.Distributed;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Benchmarks;

/// <summary>
/// The distributed runtime's benchmarks, run as a real two-rank job (the program relaunches itself under mpirun
/// through <see cref="MpiLauncher"/>, as a trainer does); not BenchmarkDotNet, which cannot run inside MPI ranks.
/// <list type="bullet">
/// <item><c>--allreduce [maxBytes] [async]</c>: all-reduce from 1 KB to 256 MB (float32, SUM, in place) against a
/// single-process memcpy of the same size, reported as nccl-tests does: algorithm bandwidth = bytes / time, bus
/// bandwidth = algbw · 2(n−1)/n (the bytes each rank moves in a ring all-reduce, comparable across world sizes).</item>
/// <item><c>--ddp-scaling</c>: DDP scaling efficiency on the Digits CNN (the sample's layer stack, AdamW, batch 64
/// per rank, 1 thread per rank, optdigits): samples/s at world size 2 over twice the samples/s of one process.</item>
/// <item><c>--ddp-overlap [bucketMB]</c>: forward+backward+gradient synchronisation of a 16 MB model, blocking and
/// with buckets started during backward (<see cref="GradientReducer.EnableOverlap"/>).</item>
/// </list>
/// </summary>
public static class DistributedBenchmarks
{
    /// <summary>Runs the mode named by <c>args[0]</c> on two ranks, relaunching under mpirun when not yet a rank.</summary>
    public static int Run(string[] args)
    {
        if (args[0] == "--ddp-scaling")
            return DdpScaling(args);
        if (MpiLauncher.ShouldRelaunch(2))
            return MpiLauncher.Relaunch(args, 2);
        set_num_threads(1);
        using var group = ProcessGroup.Create(CommBackend.Mpi, CPU);
        string[] rest = args[1..];
        return MpiLauncher.RunRank(group, () => args[0] == "--allreduce" ? AllReduceBandwidth(group, rest) : MeasureOverlap(group, rest));
    }

    public static int AllReduceBandwidth(ProcessGroup group, string[] args)
    {
        long maxBytes = args.Length > 0 ? long.Parse(args[0], CultureInfo.InvariantCulture) : 256L << 20;
        // "async": time AllReduceAsync + Wait (MPI_Iallreduce, Open MPI's libnbc schedules) instead of MPI_Allreduce.
        bool nonBlocking = args.Length > 1 && args[1] == "async";
        void Reduce(Tensor t)
        {
            if (nonBlocking)
            {
                using var work = group.AllReduceAsync(t);
                work.Wait();
            }
            else
            {
                group.AllReduce(t);
            }
        }
        int w = group.WorldSize;
        if (group.Rank == 0)
        {
            Console.WriteLine($"| size | all-reduce time | algbw (GB/s) | busbw (GB/s) | memcpy time | memcpy (GB/s) | busbw / memcpy |");
            Console.WriteLine("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        }
        for (long bytes = 1024; bytes <= maxBytes; bytes *= 4)
        {
            long n = bytes / 4;
            using var t = ones(n);
            // Enough repetitions for ~0.1 s per round, agreed between ranks (rank 0's estimate is broadcast).
            group.Barrier();
            var probe = Stopwatch.StartNew();
            Reduce(t);
            Reduce(t);
            using var reps = tensor(new long[] { Math.Clamp((long)(0.1 / Math.Max(probe.Elapsed.TotalSeconds / 2, 1e-6)), 3, 5000) });
            group.Broadcast(reps, 0);
            long iterations = reps.item<long>();

            // Rounds alternate all-reduce and memcpy, so that load from other processes on the machine hits both
            // alike; each figure is the median round.
            const int rounds = 5;
            var reduceTimes = new double[rounds];
            var copyTimes = new double[rounds];
            using var dst = empty(n);
            dst.copy_(t);
            for (int round = 0; round < rounds; round++)
            {
                group.Barrier();
                var clock = Stopwatch.StartNew();
                for (long i = 0; i < iterations; i++)
                    Reduce(t);
                group.Barrier();
                reduceTimes[round] = clock.Elapsed.TotalSeconds / iterations;
                if (group.Rank == 0)
                {
                    var copyClock = Stopwatch.StartNew();
                    for (long i = 0; i < iterations; i++)
                        dst.copy_(t);
                    copyTimes[round] = copyClock.Elapsed.TotalSeconds / iterations;
                }
            }
            Array.Sort(reduceTimes);
            Array.Sort(copyTimes);
            double seconds = reduceTimes[rounds / 2];
            double copySeconds = copyTimes[rounds / 2];
            group.Barrier();
            if (group.Rank == 0)
            {
                double algbw = bytes / seconds / 1e9;
                double busbw = algbw * 2 * (w - 1) / w;
                double copy = bytes / copySeconds / 1e9;
                Console.WriteLine(FormattableString.Invariant(
                    $"| {Size(bytes)} | {Time(seconds)} | {algbw:F2} | {busbw:F2} | {Time(copySeconds)} | {copy:F2} | {busbw / copy:F2} |"));
            }
        }
        return 0;
    }

    private static string Size(long bytes) => bytes >= 1 << 20 ? $"{bytes >> 20} MB" : $"{bytes >> 10} KB";

    private static string Time(double seconds) => seconds >= 1e-3
        ? FormattableString.Invariant($"{seconds * 1e3:F2} ms")
        : FormattableString.Invariant($"{seconds * 1e6:F1} µs");


    /// <summary>
    /// Times forward+backward+synchronise of a ~16 MB model with and without the overlap hooks, and the reduction
    /// alone; prints one line per figure (rank 0).
    /// </summary>
    public static int MeasureOverlap(ProcessGroup group, string[] args)
    {
        double bucketSizeMB = args.Length > 0 ? double.Parse(args[0], CultureInfo.InvariantCulture) : 4;
        const int rounds = 40;
        var model = nn.Sequential(
            ("l1", nn.Linear(1024, 1024)), ("a1", nn.ReLU()), ("l2", nn.Linear(1024, 1024)), ("a2", nn.ReLU()),
            ("l3", nn.Linear(1024, 1024)), ("a3", nn.ReLU()), ("l4", nn.Linear(1024, 1024)));
        DataParallel.BroadcastParameters(group, model);
        manual_seed(1 + group.Rank);
        using var x = randn(256, 1024);
        using var blocking = new GradientReducer(group, model.parameters(), bucketSizeMB);
        // The hooks stay registered on the model; they only act for the reducer that owns them, and the other
        // configurations discard the readiness signals by synchronising through their own reducer.
        var overlapModel = nn.Sequential(
            ("l1", nn.Linear(1024, 1024)), ("a1", nn.ReLU()), ("l2", nn.Linear(1024, 1024)), ("a2", nn.ReLU()),
            ("l3", nn.Linear(1024, 1024)), ("a3", nn.ReLU()), ("l4", nn.Linear(1024, 1024)));
        DataParallel.BroadcastParameters(group, overlapModel);
        using var overlapped = new GradientReducer(group, overlapModel.parameters(), bucketSizeMB);
        overlapped.EnableOverlap(overlapModel);
        int started = 0;

        double Once(Sequential m, GradientReducer? reducer)
        {
            m.zero_grad();
            group.Barrier();
            var clock = Stopwatch.StartNew();
            using (var scope = NewDisposeScope())
            {
                m.call(x).square().mean().backward();
                reducer?.Synchronize();
            }
            if (reducer == overlapped)
                started = overlapped.BucketsStartedDuringBackward;
            return clock.Elapsed.TotalMilliseconds;
        }

        // Interleaved, so that a noisy neighbour on the machine slows all three configurations alike.
        var compute = new double[rounds];
        var sync = new double[rounds];
        var overlap = new double[rounds];
        for (int i = -3; i < rounds; i++)
        {
            double a = Once(model, null), b = Once(model, blocking), c = Once(overlapModel, overlapped);
            if (i < 0)
                continue;
            compute[i] = a;
            sync[i] = b;
            overlap[i] = c;
        }
        double Median(double[] v)
        {
            var s = (double[])v.Clone();
            Array.Sort(s);
            return s[s.Length / 2];
        }
        double computeOnly = Median(compute), withBlocking = Median(sync), withOverlap = Median(overlap);
        if (group.Rank == 0)
        {
            double comm = withBlocking - computeOnly;
            Console.WriteLine($"overlap: bucket cap {bucketSizeMB} MiB, buckets {overlapped.Buckets.Count}, started during backward {started}");
            Console.WriteLine($"overlap: forward+backward {computeOnly:F2} ms, +synchronize blocking {withBlocking:F2} ms, overlapped {withOverlap:F2} ms (medians of {rounds}, interleaved)");
            Console.WriteLine($"overlap: communication hidden {(comm > 0 ? (withBlocking - withOverlap) / comm : 0):P0} of {comm:F2} ms");
        }
        return 0;
    }

    /// <summary>
    /// World size 1 in this process (a group of one: no communication) alternating with world size 2 under mpirun;
    /// efficiency = samples/s at 2 / (2 × the mean of the single-process figures before and after it).
    /// </summary>
    private static int DdpScaling(string[] args)
    {
        set_num_threads(1);
        if (DistributedEnvironment.IsMpiRank)
        {
            using var world = ProcessGroup.Create(CommBackend.Mpi, CPU);
            return MpiLauncher.RunRank(world, () =>
            {
                var (samplesPerSecond, commFraction) = Train(world);
                if (world.Rank == 0)
                    File.WriteAllText(args[2], FormattableString.Invariant($"{samplesPerSecond} {commFraction}"));
                return 0;
            });
        }

        // W=1, W=2, W=1, W=2, W=1, W=2, W=1: each W=2 figure is set against the single-process figures on either
        // side of it, and the efficiency reported is the median of the three, so that a burst of load from other
        // processes on the machine spoils one pair rather than the result.
        using var single = new SingleProcessGroup();
        const int pairs = 3;
        var one = new double[pairs + 1];
        var two = new double[pairs];
        var comm = new double[pairs];
        one[0] = Train(single).SamplesPerSecond;
        for (int i = 0; i < pairs; i++)
        {
            string result = Path.GetTempFileName();
            int code = MpiLauncher.Relaunch(new[] { "--ddp-scaling", "--out", result }, 2);
            if (code != 0)
                return code;
            var parts = File.ReadAllText(result).Split(' ');
            File.Delete(result);
            two[i] = double.Parse(parts[0], CultureInfo.InvariantCulture);
            comm[i] = double.Parse(parts[1], CultureInfo.InvariantCulture);
            one[i + 1] = Train(single).SamplesPerSecond;
        }
        var efficiency = Enumerable.Range(0, pairs).Select(i => two[i] / (one[i] + one[i + 1])).ToArray();
        Console.WriteLine("| run | 1 × 1 samples/s (before, after) | 2 × 1 samples/s | communication share | efficiency |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: |");
        for (int i = 0; i < pairs; i++)
            Console.WriteLine(FormattableString.Invariant($"| {i + 1} | {one[i]:F0}, {one[i + 1]:F0} | {two[i]:F0} | {comm[i]:P0} | {efficiency[i]:F2} |"));
        Console.WriteLine(FormattableString.Invariant($"scaling efficiency (median): {efficiency.OrderBy(e => e).ElementAt(pairs / 2):F2}"));
        return 0;
    }

    /// <summary>Global samples per second of DDP training steps (median of 3 rounds of 40 steps), and the share of time in collectives.</summary>
    private static (double SamplesPerSecond, double CommFraction) Train(ProcessGroup group)
    {
        const int batch = 64, rounds = 3, steps = 40, warmup = 5;
        using var data = CsvDataset.Load(RepoFiles.Require(RepoFiles.DigitsTraining), new long[] { 1, 8, 8 }, LabelKind.ClassIndex);
        data.Features.mul_(1.0 / 16);
        manual_seed(0);
        var model = new GeneratedCnn();
        model.train();
        DataParallel.BroadcastParameters(group, model);
        using var reducer = new GradientReducer(group, model.parameters());
        using var optimizer = optim.AdamW(model.parameters(), 2e-3, weight_decay: 0.01);
        var sampler = new DistributedSampler(data.Count, group.WorldSize, group.Rank, shuffle: true, seed: 0);
        using var order = sampler.AsTensor();
        long position = 0;

        void Step()
        {
            using var scope = NewDisposeScope();
            if (position + batch > sampler.NumSamples)
                position = 0;
            var idx = order.narrow(0, position, batch);
            position += batch;
            optimizer.zero_grad();
            var loss = nn.functional.cross_entropy(model.forward(data.Features.index_select(0, idx)), data.Labels.index_select(0, idx));
            loss.backward();
            reducer.Synchronize();
            optimizer.step();
        }

        for (int i = 0; i < warmup; i++)
            Step();
        var rates = new double[rounds];
        var comm = new double[rounds];
        for (int r = 0; r < rounds; r++)
        {
            group.Barrier();
            var before = reducer.CommunicationTime;
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < steps; i++)
                Step();
            group.Barrier();
            rates[r] = (double)batch * group.WorldSize * steps / clock.Elapsed.TotalSeconds;
            comm[r] = (reducer.CommunicationTime - before) / clock.Elapsed;
        }
        Array.Sort(rates);
        Array.Sort(comm);
        return (rates[rounds / 2], comm[rounds / 2]);
    }
}
