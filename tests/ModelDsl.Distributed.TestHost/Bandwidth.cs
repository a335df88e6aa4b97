using System;
using System.Diagnostics;
using System.Globalization;
using ModelDsl.Runtime.Distributed;
using static TorchSharp.torch;

namespace ModelDsl.Distributed.TestHost;

/// <summary>
/// All-reduce bandwidth from 1 KB to 256 MB (float32, SUM, in place) against a single-process memcpy of the same
/// size, reported as nccl-tests does: algorithm bandwidth = bytes / time, bus bandwidth = algbw · 2(n−1)/n (the
/// bytes each rank must move in a ring all-reduce, so figures compare across world sizes).
/// </summary>
internal static class Bandwidth
{
    public static int Run(ProcessGroup group, string[] args)
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
            // Enough repetitions for ~0.3 s per size, agreed between ranks (rank 0's estimate is broadcast).
            group.Barrier();
            var probe = Stopwatch.StartNew();
            Reduce(t);
            Reduce(t);
            using var reps = tensor(new long[] { Math.Clamp((long)(0.3 / Math.Max(probe.Elapsed.TotalSeconds / 2, 1e-6)), 3, 2000) });
            group.Broadcast(reps, 0);
            long iterations = reps.item<long>();
            group.Barrier();
            var clock = Stopwatch.StartNew();
            for (long i = 0; i < iterations; i++)
                Reduce(t);
            group.Barrier();
            double seconds = clock.Elapsed.TotalSeconds / iterations;

            double copySeconds = 0;
            if (group.Rank == 0)
            {
                using var dst = empty(n);
                dst.copy_(t);
                long copies = Math.Max(3, iterations);
                var copyClock = Stopwatch.StartNew();
                for (long i = 0; i < copies; i++)
                    dst.copy_(t);
                copySeconds = copyClock.Elapsed.TotalSeconds / copies;
            }
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
}
