using System;
using System.Diagnostics;
using System.Linq;

namespace ModelDsl.Benchmarks;

/// <summary>
/// A cross-check of the ForwardBackward ratio (and, with <see cref="RunTrainerStep"/>, the TrainerStep ratio) that does
/// not use BenchmarkDotNet: in one process, blocks of steps on the hand-written and the generated model alternate
/// (ABBA order), so drift in machine load hits both alike. On a shared two-core machine BenchmarkDotNet measures the
/// two sequentially, in separate processes, and a burst of background load during one of them shows up in its ratio;
/// this check is far less sensitive to that.
/// Run: <c>dotnet run -c Release --project tests/ModelDsl.Benchmarks -- --interleaved</c> (or <c>--interleaved-step</c>).
/// </summary>
public static class InterleavedCheck
{
    public static void Run()
    {
        Console.WriteLine("Interleaved A/B check: forward + cross-entropy + backward, batch 64, torch threads = 1");
        Header();
        foreach (var model in new[] { "Mlp", "Cnn", "ResCnn" })
        {
            var b = new ForwardBackwardBenchmarks { Model = model };
            b.Setup();
            Measure(model, () => b.HandWritten(), () => b.Generated());
            b.Cleanup();
        }
    }

    /// <summary>
    /// The same check for <see cref="TrainerStepBenchmarks"/>: the trainer's whole optimisation step against the
    /// hand-written one. Run: <c>dotnet run -c Release --project tests/ModelDsl.Benchmarks -- --interleaved-step</c>.
    /// </summary>
    public static void RunTrainerStep()
    {
        Console.WriteLine("Interleaved A/B check: optimisation step (forward, loss, backward, Adam step, correct count), batch 64,");
        Console.WriteLine("torch threads = 1; \"Generated\" is the trainer's TrainingStep on the generated model");
        Header();
        foreach (var model in new[] { "Mlp", "Cnn" })
        {
            var b = new TrainerStepBenchmarks { Model = model };
            b.Setup();
            Measure(model, () => b.HandWritten(), () => b.Generated());
            b.Cleanup();
        }
    }

    private static void Header()
    {
        Console.WriteLine("Ratio = generated / hand-written per round (the two blocks of a round run back to back); median and");
        Console.WriteLine("interquartile range over the rounds.");
        Console.WriteLine($"{"Model",-6}{"Rounds",8}{"HandWritten (median)",24}{"Generated (median)",22}{"Ratio (median)",16}{"Ratio IQR",18}");
    }

    private static void Measure(string model, Action handWritten, Action generated)
    {
        // Block size: about 20 ms of work per block.
        int steps = 0;
        var probe = Stopwatch.StartNew();
        while (probe.ElapsedMilliseconds < 40) { handWritten(); generated(); steps++; }
        steps = Math.Max(1, steps);
        // Warm-up, two seconds.
        var warm = Stopwatch.StartNew();
        while (warm.ElapsedMilliseconds < 2000) { handWritten(); generated(); }

        const int rounds = 100;
        var hand = new double[rounds];
        var gen = new double[rounds];
        for (int r = 0; r < rounds; r++)
        {
            // ABBA: alternate which model goes first.
            if (r % 2 == 0) { hand[r] = Block(handWritten, steps); gen[r] = Block(generated, steps); }
            else { gen[r] = Block(generated, steps); hand[r] = Block(handWritten, steps); }
        }
        var ratios = hand.Zip(gen, (h, g) => g / h).OrderBy(v => v).ToArray();
        Console.WriteLine($"{model,-6}{rounds,8}{Median(hand),21:F1} us{Median(gen),19:F1} us{Median(ratios),16:F3}" +
            $"{$"{ratios[rounds / 4]:F3} - {ratios[3 * rounds / 4]:F3}",18}");
    }

    private static double Block(Action step, int steps)
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
