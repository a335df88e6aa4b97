using System;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using ModelDsl.Runtime.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelDsl.Distributed.TestHost;

/// <summary>
/// Collective numerics on every dtype and on sizes 0, 1, odd and large: each rank fills its tensor with values it
/// can also compute for every other rank (small integers, exact in every dtype including bfloat16), so the expected
/// result of every reduction is known exactly on every rank.
/// </summary>
internal static class Collectives
{
    private static readonly ScalarType[] Reducible =
    {
        ScalarType.Float32, ScalarType.Float64, ScalarType.Float16, ScalarType.BFloat16, ScalarType.Int32, ScalarType.Int64,
        ScalarType.Int16, ScalarType.Int8, ScalarType.Byte,
    };

    private static readonly long[] Sizes = { 0, 1, 7, 1001, (1 << 20) + 3 };

    public static int Run(ProcessGroup group)
    {
        var check = new Checker(group.Rank);
        int w = group.WorldSize;
        var env = DistributedEnvironment.Current;
        check.That(env is not null && env.Rank == group.Rank && env.WorldSize == w, $"group rank/size {group.Rank}/{w} match the launcher's {env?.Rank}/{env?.WorldSize}");
        check.That(group.Backend == "mpi", $"backend is mpi, got {group.Backend}");

        foreach (var dtype in Reducible)
        {
            foreach (long n in Sizes)
            {
                foreach (var op in new[] { ReduceOp.Sum, ReduceOp.Avg, ReduceOp.Max, ReduceOp.Min })
                {
                    using (var t = Fill(group.Rank, n, dtype))
                    {
                        group.AllReduce(t, op);
                        Compare(check, t, Expected(op, n, w, dtype), $"all_reduce {op} {dtype} n={n}");
                    }
                    // The non-blocking form, waited on directly (the large size also polled first).
                    using (var t = Fill(group.Rank, n, dtype))
                    {
                        using var work = group.AllReduceAsync(t, op);
                        if (n > 1000)
                        {
                            var clock = Stopwatch.StartNew();
                            while (!work.IsCompleted() && clock.Elapsed < TimeSpan.FromSeconds(30))
                                Thread.Yield();
                        }
                        work.Wait();
                        Compare(check, t, Expected(op, n, w, dtype), $"all_reduce_async {op} {dtype} n={n}");
                    }
                }
            }

            // A strided view: the reduction lands in the base tensor's memory.
            using (var baseTensor = Fill(group.Rank, 7 * 3, dtype).reshape(7, 3))
            using (var view = baseTensor.t())
            {
                group.AllReduce(view, ReduceOp.Sum);
                Compare(check, baseTensor.reshape(-1), Expected(ReduceOp.Sum, 21, w, dtype), $"all_reduce Sum on a transposed view, {dtype}");
            }

            foreach (long n in new long[] { 0, 1, 7, 1001 })
            {
                int root = w - 1;
                using (var t = Fill(group.Rank, n, dtype))
                {
                    group.Broadcast(t, root);
                    Compare(check, t, Values(root, n, dtype), $"broadcast from {root} {dtype} n={n}");
                }
                using (var t = Fill(group.Rank, n, dtype))
                {
                    var all = group.AllGather(t);
                    check.That(all.Length == w, $"all_gather {dtype} n={n} returns {w} tensors, got {all.Length}");
                    for (int r = 0; r < all.Length; r++)
                    {
                        check.That(all[r].dtype == dtype && all[r].shape.SequenceEqual(t.shape), $"all_gather {dtype} n={n}: rank {r}'s tensor has this rank's shape and dtype");
                        Compare(check, all[r], Values(r, n, dtype), $"all_gather {dtype} n={n} from rank {r}");
                        all[r].Dispose();
                    }
                }
            }
        }

        ReduceScatterAndAllGatherInto(group, check);

        // bool has no reduction, but broadcast copies any dtype.
        using (var flags = tensor(Enumerable.Range(0, 9).Select(i => (i + group.Rank) % 2 == 0).ToArray()))
        {
            group.Broadcast(flags, 0);
            check.That(flags.data<bool>().ToArray().SequenceEqual(Enumerable.Range(0, 9).Select(i => i % 2 == 0)), "broadcast of a bool tensor");
            check.That(Throws<ArgumentException>(() => group.AllReduce(flags), "unsupported dtype torch.bool"), "all_reduce of a bool tensor is a clear ArgumentException");
        }
        check.That(Throws<ArgumentOutOfRangeException>(() => group.Broadcast(zeros(1), w), $"Invalid root rank {w}"), "broadcast from a rank outside the group is a clear error");

        // A size mismatch in all_gather is an error on every rank, not an overrun.
        using (var uneven = zeros(3 + group.Rank))
            check.That(Throws<DistributedException>(() => group.AllGather(uneven), "the ranks' tensors differ"), "all_gather of different sizes is a DistributedException on every rank");

        // Barrier: the last rank arrives 400 ms late; everyone leaves together.
        var barrierClock = Stopwatch.StartNew();
        if (group.Rank == w - 1)
            Thread.Sleep(400);
        group.Barrier();
        if (group.Rank == 0 && w > 1)
            check.That(barrierClock.ElapsedMilliseconds >= 350, $"barrier waited for the late rank ({barrierClock.ElapsedMilliseconds} ms)");

        return check.Finish("collectives");
    }

    /// <summary>
    /// reduce_scatter_tensor (every reducible dtype, every op, sizes 0, 1, 7, 1001 per rank, a non-contiguous output)
    /// and all_gather_into_tensor (the same dtypes plus bool), with the results known exactly on every rank.
    /// </summary>
    private static void ReduceScatterAndAllGatherInto(ProcessGroup group, Checker check)
    {
        int w = group.WorldSize;
        foreach (var dtype in Reducible)
        {
            foreach (long n in new long[] { 0, 1, 7, 1001 })
            {
                foreach (var op in new[] { ReduceOp.Sum, ReduceOp.Avg, ReduceOp.Max, ReduceOp.Min })
                {
                    using var input = Fill(group.Rank, n * w, dtype);
                    using var output = full(n, 99, dtype);
                    group.ReduceScatter(output, input, op);
                    var mine = Expected(op, n * w, w, dtype).Skip((int)(group.Rank * n)).Take((int)n).ToArray();
                    Compare(check, output, mine, $"reduce_scatter_tensor {op} {dtype} n={n}");
                }
                using (var input = Fill(group.Rank, n, dtype))
                using (var output = empty(w * n, dtype))
                {
                    group.AllGather(output, input);
                    Compare(check, output, Enumerable.Range(0, w).SelectMany(r => Values(r, n, dtype)).ToArray(), $"all_gather_into_tensor {dtype} n={n}");
                }
            }
            // A transposed (non-contiguous) output receives the chunk in its own element order.
            using (var input = Fill(group.Rank, 6 * w, dtype))
            using (var baseOutput = zeros(new long[] { 3, 2 }, dtype))
            using (var output = baseOutput.t())
            {
                group.ReduceScatter(output, input, ReduceOp.Sum);
                var mine = Expected(ReduceOp.Sum, 6 * w, w, dtype).Skip(group.Rank * 6).Take(6).ToArray();
                Compare(check, output, mine, $"reduce_scatter_tensor into a transposed view, {dtype}");
            }
        }
        using (var flags = tensor(new[] { group.Rank % 2 == 0, true }))
        using (var all = empty(2 * w, ScalarType.Bool))
        {
            group.AllGather(all, flags);
            check.That(all.data<bool>().ToArray().SequenceEqual(Enumerable.Range(0, w).SelectMany(r => new[] { r % 2 == 0, true })), "all_gather_into_tensor of a bool tensor");
        }
        check.That(Throws<ArgumentException>(() => group.ReduceScatter(zeros(3), zeros(3 * w + 1)), "must have world size"), "reduce_scatter_tensor with an input of the wrong size is a clear ArgumentException");
        check.That(Throws<ArgumentException>(() => group.ReduceScatter(zeros(3), zeros(3 * w, ScalarType.Float64)), "same dtype"), "reduce_scatter_tensor with mixed dtypes is a clear ArgumentException");
        check.That(Throws<ArgumentException>(() => group.AllGather(zeros(2 * w + 1), zeros(2)), "must have world size"), "all_gather_into_tensor with an output of the wrong size is a clear ArgumentException");
        check.That(Throws<ArgumentException>(() => group.ReduceScatter(zeros(1, ScalarType.Bool), zeros(w, ScalarType.Bool)), "unsupported dtype torch.bool"), "reduce_scatter_tensor of bool is a clear ArgumentException");
    }

    /// <summary>Rank r's value at index i: small integers (in [0, 10] for uint8, [-5, 5] otherwise).</summary>
    private static double Value(int rank, long i, ScalarType dtype)
    {
        long v = (i * 7 + rank * 3) % 11;
        return dtype == ScalarType.Byte ? v : v - 5;
    }

    private static double[] Values(int rank, long n, ScalarType dtype)
    {
        var values = new double[n];
        for (long i = 0; i < n; i++)
            values[i] = Value(rank, i, dtype);
        return values;
    }

    private static Tensor Fill(int rank, long n, ScalarType dtype)
    {
        using var d = tensor(Values(rank, n, dtype), ScalarType.Float64);
        return d.to(dtype);
    }

    private static double[] Expected(ReduceOp op, long n, int worldSize, ScalarType dtype)
    {
        var result = new double[n];
        bool integer = dtype is not (ScalarType.Float32 or ScalarType.Float64 or ScalarType.Float16 or ScalarType.BFloat16);
        for (long i = 0; i < n; i++)
        {
            double sum = 0, max = double.MinValue, min = double.MaxValue;
            for (int r = 0; r < worldSize; r++)
            {
                double v = Value(r, i, dtype);
                sum += v;
                max = Math.Max(max, v);
                min = Math.Min(min, v);
            }
            result[i] = op switch
            {
                ReduceOp.Sum => sum,
                ReduceOp.Avg => integer ? Math.Truncate(sum / worldSize) : sum / worldSize,
                ReduceOp.Max => max,
                _ => min,
            };
        }
        return result;
    }

    private static void Compare(Checker check, Tensor actual, double[] expected, string what)
    {
        // Each intermediate in a variable: a temporary whose handle is being read by native code can otherwise be
        // finalized by the GC mid-call (a segfault under load: the native tensor freed under libtorch's feet).
        using var reshaped = actual.reshape(-1);
        using var flat = reshaped.to(ScalarType.Float64);
        var got = flat.data<double>().ToArray();
        if (got.Length != expected.Length)
        {
            check.That(false, $"{what}: {got.Length} elements, expected {expected.Length}");
            return;
        }
        int bad = -1;
        for (int i = 0; i < got.Length; i++)
        {
            if (got[i] != expected[i])
            {
                bad = i;
                break;
            }
        }
        check.That(bad < 0, bad < 0 ? what : $"{what}: element {bad} is {got[bad]}, expected {expected[bad]}");
    }

    private static bool Throws<T>(Action action, string messagePart) where T : Exception
    {
        try
        {
            action();
            return false;
        }
        catch (T e)
        {
            if (!e.Message.Contains(messagePart, StringComparison.Ordinal))
            {
                Console.WriteLine($"unexpected message: {e.Message}");
                return false;
            }
            return true;
        }
    }
}
