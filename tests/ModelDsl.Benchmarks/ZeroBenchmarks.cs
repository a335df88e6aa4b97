using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using ModelDsl.Runtime.Distributed;
using ModelDsl.Runtime.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Benchmarks;

/// <summary>
/// <c>--zero [steps [rounds]]</c>: DDP against ZeRO stages 1 and 2 (<see cref="ShardedDataParallelStrategy"/>) at two
/// ranks under mpirun, on <see cref="ZeroMlp"/> (Ψ = 4,198,400), fp32 Adam, batch 64 per rank of random rows with an
/// MSE loss, 1 thread per rank. Each configuration runs through the trainer's own <see cref="TrainingStep"/> and its
/// strategy's <c>AfterStep</c> (the all-gather of the updated partitions), from the same seed; the rounds interleave the
/// three, so load from other processes on the machine hits them alike, and each step time is the median round. The
/// model-state bytes per rank are the trainer's own measurement (<see cref="MemoryProbe"/>, the report's
/// <c>memory.measured</c>) after a step, beside ZeRO's formulas in fp32 (4 + 4 + 8 bytes per parameter for Adam).
/// Stage 3 partitions whole tensors between the ranks (docs/memory.md). zero_peer.py is the PyTorch side.
/// </summary>
public static class ZeroBenchmarks
{
    private const int Batch = 64, Width = 1024, Warmup = 3;

    public static int Run(string[] args)
    {
        int steps = 20, rounds = 5;
        if ((args.Length > 1 && !int.TryParse(args[1], CultureInfo.InvariantCulture, out steps)) ||
            (args.Length > 2 && !int.TryParse(args[2], CultureInfo.InvariantCulture, out rounds)) || steps < 1 || rounds < 1)
        {
            Console.Error.WriteLine($"error: --zero takes steps per round and rounds, both at least 1 (default 20 5), got '{string.Join(" ", args[1..])}'");
            return 2;
        }
        if (MpiLauncher.ShouldRelaunch(2))
            return MpiLauncher.Relaunch(args, 2);
        set_num_threads(1);
        using var group = ProcessGroup.Create(CommBackend.Mpi, CPU);
        return MpiLauncher.RunRank(group, () => Measure(group, steps, rounds));
    }

    /// <summary>One configuration: its model, optimiser, strategy and the trainer's step over them.</summary>
    private sealed class Config(string name, ProcessGroup group, ShardLevel? level) : IDisposable
    {
        public string Name { get; } = name;
        public readonly ZeroMlp Model = Seeded();
        public readonly TrainingPlan Plan = new()
        {
            ModelName = nameof(ZeroMlp), SampleShape = new long[] { Width }, Loss = Loss.MSE, Optimizer = Optimizer.Adam, LearningRate = 1e-3,
            Mode = ParallelMode.Sync, WorldSize = group.WorldSize, Shard = level ?? ShardLevel.None,
        };
        public OptimizerHelper Optim = null!;
        public ITrainingStrategy Strategy = null!;
        public TrainingStep Step = null!;
        public long Taken;

        public void Start()
        {
            Optim = Trainer.CreateOptimizer(Plan, Model);
            Strategy = level is null ? new DataParallelStrategy(group, Plan) : new ShardedDataParallelStrategy(group, Plan);
            Strategy.Start(Model, 0, Optim);
            Step = new TrainingStep(Model, Optim, Plan, Strategy);
        }

        private static ZeroMlp Seeded()
        {
            manual_seed(0);
            return new ZeroMlp();
        }

        public void Dispose()
        {
            Strategy.Dispose();
            Optim.Dispose();
            Model.Dispose();
        }
    }

    private static int Measure(ProcessGroup group, int steps, int rounds)
    {
        int n = group.WorldSize;
        manual_seed(100 + group.Rank);
        using var x = randn(Batch, Width);
        using var y = randn(Batch, Width);
        var configs = new List<Config>
        {
            new("DDP", group, null), new("ZeRO-1 (OptimizerState)", group, ShardLevel.OptimizerState), new("ZeRO-2 (Gradients)", group, ShardLevel.Gradients),
            new("ZeRO-3 (Parameters)", group, ShardLevel.Parameters),
        };
        foreach (var c in configs)
            c.Start();

        double Once(Config c)
        {
            group.Barrier();
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < steps; i++)
            {
                using var scope = NewDisposeScope();
                var result = c.Step.Run(x, y);
                c.Strategy.AfterStep(c.Model, ++c.Taken, result.Loss, result.Applied);
            }
            group.Barrier();
            return clock.Elapsed.TotalMilliseconds / steps;
        }

        foreach (var c in configs)
            for (int i = 0; i < Warmup; i++)
                Once(c);
        var times = configs.Select(_ => new double[rounds]).ToArray();
        for (int r = 0; r < rounds; r++)
            for (int k = 0; k < configs.Count; k++)
                times[k][r] = Once(configs[k]);

        // The model state after one more step, as the trainer's memory probe counts it; then every rank's figures on rank 0.
        var figures = new List<MemoryFigures>();
        foreach (var c in configs)
        {
            var probe = new MemoryProbe { Armed = true };
            c.Step.Probe = probe;
            using (var scope = NewDisposeScope())
            {
                var result = c.Step.Run(x, y);
                c.Strategy.AfterStep(c.Model, ++c.Taken, result.Loss, result.Applied);
            }
            probe.AfterStep(c.Model, c.Optim);
            figures.Add(probe.Measured!);
        }
        // [config][rank][parameters, gradients, optimizer state], each rank filling its own slots, summed over ranks.
        using var all = zeros(new long[] { configs.Count, n, 3 }, ScalarType.Float64);
        for (int k = 0; k < configs.Count; k++)
            {
            using var mine = tensor(new double[] { figures[k].Parameters, figures[k].Gradients, figures[k].OptimizerState }, ScalarType.Float64);
            using var slot = all[k, group.Rank];
            slot.copy_(mine);
        }
        group.AllReduce(all);
        // The losses agree across configurations in fp32 (stage 1 and 2 equal DDP within 1e-6): a wrong strategy would show here.
        double[] losses = configs.Select(c => LastLoss(c, x, y)).ToArray();

        if (group.Rank == 0)
        {
            long psi = configs[0].Model.parameters().Sum(p => p.numel());
            string[] formulas = { "16Ψ", "4Ψ + 4Ψ + 8Ψ/N", "4Ψ + 12Ψ/N", "16Ψ/N" };
            double[] formula = { 16.0 * psi, 8.0 * psi + 8.0 * psi / n, 4.0 * psi + 12.0 * psi / n, 16.0 * psi / n };
            double ddpTime = Median(times[0]);
            Console.WriteLine(FormattableString.Invariant($"ZeroMlp: Ψ = {psi:N0}, fp32 Adam, batch {Batch} per rank, {n} ranks × 1 thread, {rounds} interleaved rounds of {steps} steps"));
            Console.WriteLine("| configuration | rank | parameters | gradients | optimizer state | model state | fp32 formula | formula bytes | measured / formula | step (ms, median) | vs DDP | loss after |");
            Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
            for (int k = 0; k < configs.Count; k++)
            {
                for (int rank = 0; rank < n; rank++)
                {
                    double p = all[k, rank, 0].item<double>(), g = all[k, rank, 1].item<double>(), o = all[k, rank, 2].item<double>();
                    double total = p + g + o, time = Median(times[k]);
                    Console.WriteLine(FormattableString.Invariant(
                        $"| {configs[k].Name} | {rank} | {p:N0} | {g:N0} | {o:N0} | {total:N0} | {formulas[k]} | {formula[k]:N0} | {total / formula[k]:F3} | {time:F1} | {time / ddpTime:F2} | {losses[k]:F6} |"));
                }
            }
            Console.WriteLine("step times, every round (ms): " + string.Join("; ", configs.Select((c, k) => c.Name + " " + string.Join(" ", times[k].Select(t => t.ToString("F1", CultureInfo.InvariantCulture))))));
        }
        foreach (var c in configs)
            c.Dispose();
        return 0;
    }

    /// <summary>The loss of the model as it stands (no step), on rank 0's batch.</summary>
    private static double LastLoss(Config c, Tensor x, Tensor y)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return nn.functional.mse_loss(c.Model.forward(x), y).item<float>();
    }

    private static double Median(double[] v)
    {
        var s = (double[])v.Clone();
        Array.Sort(s);
        return s[s.Length / 2];
    }
}
