using System;
using System.Diagnostics;
using System.Linq;

namespace ModelDsl.Benchmarks;

/// <summary>
/// A cross-check of the ForwardBackward ratio that does not use BenchmarkDotNet: in one process, blocks of steps on
/// the hand-written and the generated model alternate (ABBA order), so drift in machine load hits both alike. On a
/// shared two-core machine BenchmarkDotNet measures the two sequentially, in separate processes, and a burst of
/// background load during one of them shows up in its ratio; this check is far less sensitive to that.
/// Run: <c>dotnet run -c Release --project tests/ModelDsl.Benchmarks -- --interleaved</c>.
/// </summary>
public static class InterleavedCheck
{
    public static void Run()
    {
        Console.WriteLine("Interleaved A/B check: forward + cross-entropy + backward, batch 64, torch threads = 1");
        Console.WriteLine("Ratio = generated / hand-written per round (the two blocks of a round run back to back); median and");
        Console.WriteLine("interquartile range over the rounds.");
        Console.WriteLine($"{"Model",-6}{"Rounds",8}{"HandWritten (median)",24}{"Generated (median)",22}{"Ratio (median)",16}{"Ratio IQR",18}");
        foreach (var model in new[] { "Mlp", "Cnn" })
        {
            var b = new ForwardBackwardBenchmarks { Model = model };
            b.Setup();
            // Block size: about 20 ms of work per block.
            int steps = 0;
            var probe = Stopwatch.StartNew();
            while (probe.ElapsedMilliseconds < 40) { b.HandWritten(); b.Generated(); steps++; }
            steps = Math.Max(1, steps);
            // Warm-up, two seconds.
            var warm = Stopwatch.StartNew();
            while (warm.ElapsedMilliseconds < 2000) { b.HandWritten(); b.Generated(); }

            const int rounds = 100;
            var hand = new double[rounds];
            var gen = new double[rounds];
            for (int r = 0; r < rounds; r++)
            {
                // ABBA: alternate which model goes first.
                if (r % 2 == 0) { hand[r] = Block(b.HandWritten, steps); gen[r] = Block(b.Generated, steps); }
                else { gen[r] = Block(b.Generated, steps); hand[r] = Block(b.HandWritten, steps); }
            }
            b.Cleanup();
            var ratios = hand.Zip(gen, (h, g) => g / h).OrderBy(v => v).ToArray();
            Console.WriteLine($"{model,-6}{rounds,8}{Median(hand),21:F1} us{Median(gen),19:F1} us{Median(ratios),16:F3}" +
                $"{$"{ratios[rounds / 4]:F3} - {ratios[3 * rounds / 4]:F3}",18}");
        }
    }

    private static double Block(Func<float> step, int steps)
    {
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < steps; i++) step();
        return sw.Elapsed.TotalMicroseconds / steps;
    }

    private static double Median(double[] values)
    {
        var s = values.OrderBy(v => v).ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }
}
