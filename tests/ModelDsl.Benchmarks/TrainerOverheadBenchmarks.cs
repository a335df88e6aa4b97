using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.Json;
using ModelDsl.Runtime.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;
using TensorDataset = ModelDsl.Runtime.Data.TensorDataset;

namespace ModelDsl.Benchmarks;

/// <summary>The CharGpt sample's model and [Train] plan (samples/CharGpt), for <see cref="TrainerOverheadBenchmarks"/>.</summary>
[Model(Input = "B, T", InputType = DType.Int64)]
[Train(Loss.CrossEntropy, Optimizer.AdamW, LearningRate = 2e-3, WeightDecay = 0.1, Epochs = 2, BatchSize = 16, Seed = 1337,
       Schedule = Schedule.Cosine, WarmupEpochs = 0.1, ScheduleInterval = ScheduleInterval.Step, GradientClipNorm = 1.0,
       SequenceLength = 64, Data = "input.txt")]
public partial class BenchGptTrained
{
    [Embedding(65, 128)]                      public partial Embedding Tokens { get; }
    [PositionalEmbedding(64)]                 public partial PositionalEmbedding Positions { get; }
    [TransformerBlock(Heads = 4, Repeat = 4)] public partial TransformerBlock Blocks { get; }
    [LayerNorm]                               public partial LayerNorm Norm { get; }
    [Linear(65, TiedTo = nameof(Tokens))]     public partial Linear Head { get; }
}

/// <summary>
/// <c>-- --trainer-overhead [rounds [steps [threads]]]</c>: where the generated trainer's time goes on the CharGpt sample's small
/// steps (0.8M parameters, batch 16 × 64, AdamW, clipping 1.0, 2 threads unless told), in timed phases that take turns in each
/// round, medians over the rounds:
/// <list type="number">
/// <item><b>bare step</b>: zero_grad, forward, cross-entropy, backward, clip, AdamW on one fixed batch (the
/// <c>--gpt</c> figure);</item>
/// <item><b>TrainingStep</b>: the trainer's step on that fixed batch (adds the loss read, the finiteness check and the
/// count of correct predictions);</item>
/// <item><b>+ batches</b>: the same step over the shuffled batches the trainer assembles from the training windows;</item>
/// <item><b>trainer</b>: <see cref="Trainer.Train{TModel}"/> itself for one epoch of the same number of steps (plain
/// progress, the per-step cosine schedule, guards, metrics); its time per step is the epoch's own clock from the
/// report (the training loop, without validation and the checkpoint), and the whole call's wall time is shown beside.</item>
/// </list>
/// Tokens/s = 1024 / time per step; every ratio is against the bare step of the same run.
/// </summary>
public static class TrainerOverheadBenchmarks
{
    private const int Batch = 16, Window = 64;

    public static int Run(int rounds, int steps, int threads)
    {
        set_num_threads(threads);
        string dir = Path.Combine(Path.GetTempPath(), $"modeldsl-trainer-overhead-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        try
        {
            // Random text over the sample's 65-character vocabulary: enough training windows for `steps` batches after
            // the plan's validation share (speed does not depend on what the text says).
            var plan = BenchGptTrained.Plan with { Data = Path.Combine(dir, "input.txt"), Epochs = 1, ValidationFraction = 0.05 };
            const string alphabet = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
            long windows = (long)Math.Ceiling(steps * Batch / (1 - plan.ValidationFraction)) + 2;
            var random = new Random(3);
            var text = new StringBuilder();
            for (long i = 0; i < windows * Window + 1; i++) text.Append(alphabet[random.Next(alphabet.Length)]);
            File.WriteAllText(plan.Data, text.ToString());

            manual_seed(5);
            using var model = new BenchGptTrained();
            var optimizer = Trainer.CreateOptimizer(plan, model);
            var step = new TrainingStep(model, optimizer, plan);
            model.train();
            var x = randint(0, 65, new long[] { Batch, Window }, dtype: ScalarType.Int64);
            var y = randint(0, 65, new long[] { Batch, Window }, dtype: ScalarType.Int64);
            using var train = new TensorDataset(x.repeat(steps, 1), y.repeat(steps, 1));

            void Bare()
            {
                using var scope = NewDisposeScope();
                optimizer.zero_grad();
                nn.functional.cross_entropy(model.call(x).flatten(0, 1), y.flatten()).backward();
                nn.utils.clip_grad_norm_(model.parameters(), 1.0);
                optimizer.step();
            }
            void Step()
            {
                using var scope = NewDisposeScope();
                step.Run(x, y);
            }
            double Loop(Action action)
            {
                var clock = Stopwatch.StartNew();
                for (int i = 0; i < steps; i++) action();
                return clock.Elapsed.TotalMilliseconds / steps;
            }
            double Batches(int epoch)
            {
                var clock = Stopwatch.StartNew();
                foreach (var (xb, yb) in train.Batches(Batch, shuffle: true, 1337, epoch))
                {
                    using var scope = NewDisposeScope();
                    scope.Attach(xb);
                    scope.Attach(yb);
                    step.Run(xb, yb);
                }
                return clock.Elapsed.TotalMilliseconds / steps;
            }
            (double PerStep, double Wall) RunTrainer(int round)
            {
                var options = new TrainingOptions
                {
                    Plan = plan,
                    CheckpointDirectory = Path.Combine(dir, $"ckpt{round}"),
                    ReportPath = Path.Combine(dir, $"report{round}.json"),
                    PlainProgress = true,
                    NoOptimize = true,
                    Threads = threads,
                };
                var console = Console.Out;
                Console.SetOut(TextWriter.Null);
                var clock = Stopwatch.StartNew();
                try
                {
                    if (Trainer.Train(options, () => new BenchGptTrained()) != 0)
                        throw new InvalidOperationException("the trainer failed");
                }
                finally
                {
                    Console.SetOut(console);
                }
                double wall = clock.Elapsed.TotalMilliseconds;
                using var report = JsonDocument.Parse(File.ReadAllText(options.ReportPath));
                long taken = report.RootElement.GetProperty("steps").GetInt64();
                double seconds = report.RootElement.GetProperty("history")[0].GetProperty("seconds").GetDouble();
                return (seconds * 1000 / taken, wall);
            }

            Bare(); Step(); // warm-up
            var phases = new[] { "bare step", "TrainingStep", "+ batches", "trainer (epoch loop)" };
            var times = phases.Select(_ => new List<double>()).ToArray();
            var walls = new List<double>();
            Console.WriteLine($"CharGpt 0.8M, batch {Batch} x {Window}, {threads} thread(s), {steps} steps per phase, {rounds} interleaved rounds; load: {File.ReadAllText("/proc/loadavg").Trim()}");
            for (int r = 0; r < rounds; r++)
            {
                // The order rotates per round so that no phase always follows the same one.
                for (int k = 0; k < phases.Length; k++)
                {
                    int p = (k + r) % phases.Length;
                    switch (p)
                    {
                        case 0: times[0].Add(Loop(Bare)); break;
                        case 1: times[1].Add(Loop(Step)); break;
                        case 2: times[2].Add(Batches(r)); break;
                        default:
                            var (perStep, wall) = RunTrainer(r);
                            times[3].Add(perStep);
                            walls.Add(wall);
                            break;
                    }
                }
                Console.WriteLine($"round {r + 1}: " + string.Join(", ", phases.Select((n, i) => $"{n} {times[i][^1]:F1} ms")));
            }
            double bare = OptimizationBenchmarks.Median(times[0]);
            Console.WriteLine($"medians of {rounds} rounds; load after: {File.ReadAllText("/proc/loadavg").Trim()}");
            for (int i = 0; i < phases.Length; i++)
            {
                double t = OptimizationBenchmarks.Median(times[i]);
                Console.WriteLine($"  {phases[i],-22} {t,7:F1} ms/step  {Batch * Window / t * 1000,8:N0} tokens/s  {bare / t:F3} of the bare step");
            }
            Console.WriteLine($"  (trainer call, wall incl. data load, model build, validation, checkpoint, report: median {OptimizationBenchmarks.Median(walls) / 1000:F2} s for {steps} steps)");
            return 0;
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>
    /// <c>-- --trainer-overhead-digits [rounds [threads]]</c>: the Digits MLP and CNN (optdigits.tra, batch 64, the samples'
    /// optimisers): an epoch of <see cref="TrainingStep"/> over the batches as <see cref="DigitsThroughputBenchmarks"/> runs
    /// it (the bare loop) against <see cref="Trainer.Train{TModel}"/> for one epoch over the same 3,823 samples (no
    /// validation share), samples/s from the report's epoch clock; the four cases take turns in each round.
    /// </summary>
    public static int RunDigits(int rounds, int threads)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"modeldsl-trainer-overhead-digits-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        try
        {
            var cases = new List<(string Name, Func<double> Run)>();
            foreach (var model in new[] { "DigitsMlp", "DigitsCnn" })
            {
                var bare = new DigitsThroughputBenchmarks { Model = model, Threads = threads };
                bare.Setup();
                bool mlp = model == "DigitsMlp";
                var plan = new TrainingPlan
                {
                    ModelName = model,
                    SampleShape = mlp ? new long[] { 64 } : new long[] { 1, 8, 8 },
                    Loss = Loss.CrossEntropy,
                    Optimizer = mlp ? Optimizer.Adam : Optimizer.AdamW,
                    LearningRate = 2e-3,
                    Epochs = 1,
                    BatchSize = 64,
                    ValidationFraction = 0,
                    FeatureScale = 1.0 / 16,
                    Classes = 10,
                    Data = RepoFiles.Require(RepoFiles.DigitsTraining),
                };
                cases.Add(($"{model} bare loop", () =>
                {
                    var clock = Stopwatch.StartNew();
                    long seen = bare.Epoch();
                    return seen / clock.Elapsed.TotalSeconds;
                }));
                int run = 0;
                cases.Add(($"{model} trainer", () =>
                {
                    var options = new TrainingOptions
                    {
                        Plan = plan,
                        CheckpointDirectory = Path.Combine(dir, $"{model}{run}"),
                        ReportPath = Path.Combine(dir, $"{model}{run++}.json"),
                        PlainProgress = true,
                        NoOptimize = true,
                        Threads = threads,
                    };
                    var console = Console.Out;
                    Console.SetOut(TextWriter.Null);
                    try
                    {
                        Func<nn.Module<Tensor, Tensor>> create = mlp ? () => new GeneratedDigitsMlp() : () => new GeneratedCnn();
                        if (Trainer.Train(options, create) != 0) throw new InvalidOperationException("the trainer failed");
                    }
                    finally
                    {
                        Console.SetOut(console);
                    }
                    using var report = JsonDocument.Parse(File.ReadAllText(options.ReportPath));
                    var epoch = report.RootElement.GetProperty("history")[0];
                    return epoch.GetProperty("samples").GetInt64() / epoch.GetProperty("seconds").GetDouble();
                }));
            }
            var rates = cases.Select(_ => new List<double>()).ToArray();
            Console.WriteLine($"Digits, batch 64, {threads} thread(s), one epoch of 3823 samples per case, {rounds} interleaved rounds; load: {File.ReadAllText("/proc/loadavg").Trim()}");
            for (int r = 0; r < rounds; r++)
            {
                for (int k = 0; k < cases.Count; k++)
                {
                    int c = (k + r) % cases.Count;
                    rates[c].Add(cases[c].Run());
                }
                Console.WriteLine($"round {r + 1}: " + string.Join(", ", cases.Select((c, i) => $"{c.Name} {rates[i][^1]:N0}/s")));
            }
            Console.WriteLine($"medians of {rounds} rounds; load after: {File.ReadAllText("/proc/loadavg").Trim()}");
            for (int i = 0; i < cases.Count; i += 2)
            {
                double bare = OptimizationBenchmarks.Median(rates[i]), trainer = OptimizationBenchmarks.Median(rates[i + 1]);
                Console.WriteLine($"  {cases[i].Name,-20} {bare,8:N0} samples/s; trainer {trainer,8:N0} samples/s = {trainer / bare:F3} of the bare loop");
            }
            return 0;
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }
}
