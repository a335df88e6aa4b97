using System;
using System.IO;
using BenchmarkDotNet.Attributes;
using ModelDsl.Runtime.Data;
using ModelDsl.Runtime.Training;
using TensorDataset = ModelDsl.Runtime.Data.TensorDataset;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Benchmarks;

/// <summary>
/// Training throughput of the Digits sample's two models: one invocation is one epoch of the generated trainer's step
/// (<see cref="TrainingStep"/>) over the whole optdigits training file (3823 samples, batches of 64, shuffled), at one
/// and at two torch threads. Samples per second = 3823 / the mean time of an invocation.
/// </summary>
/// <remarks>
/// <para>
/// The data is samples/Digits/data/optdigits.tra, loaded as the trainer loads it (<see cref="CsvDataset.Load"/>,
/// features scaled by 1/16) and batched as the trainer batches it (<see cref="TensorDataset.Batches"/>, shuffle with
/// seed 0, epoch 0). Unlike the trainer, no validation set is held out (the trainer's default holds out 10%), so an
/// epoch here is all 3823 samples; there is no evaluation pass and no progress display.
/// </para>
/// <para>
/// The models are the sample's layer stacks (<see cref="GeneratedDigitsMlp"/> and <see cref="GeneratedCnn"/>), built
/// after <c>manual_seed(0)</c>, in training mode, with the optimiser each sample declares (MLP: Adam, lr 2e-3; CNN:
/// AdamW, lr 2e-3, weight decay 0.01), created by <see cref="Trainer.CreateOptimizer"/>. Each step runs in its own
/// dispose scope inside the invocation's, as in the trainer. The weights keep training from one invocation to the
/// next, which does not change the cost of a step.
/// </para>
/// </remarks>
[MedianColumn]
public class DigitsThroughputBenchmarks
{
    /// <summary>Samples in optdigits.tra, checked at setup.</summary>
    public const int Samples = 3823;
    private const int BatchSize = 64;

    private TensorDataset data = null!;
    private nn.Module<Tensor, Tensor> model = null!;
    private OptimizerHelper optimizer = null!;
    private TrainingStep step = null!;

    /// <summary>The sample model: DigitsMlp or DigitsCnn.</summary>
    [Params("DigitsMlp", "DigitsCnn")]
    public string Model { get; set; } = "DigitsMlp";

    /// <summary>torch.set_num_threads.</summary>
    [Params(1, 2)]
    public int Threads { get; set; } = 1;

    [GlobalSetup]
    public void Setup()
    {
        set_num_threads(Threads);
        bool mlp = Model == "DigitsMlp";
        var sampleShape = mlp ? new long[] { 64 } : new long[] { 1, 8, 8 };
        data = CsvDataset.Load(RepoFiles.Require(RepoFiles.DigitsTraining), sampleShape, LabelKind.ClassIndex);
        data.Features.mul_(1.0 / 16);
        if (data.Count != Samples)
            throw new InvalidOperationException($"optdigits.tra holds {data.Count} samples, expected {Samples}");

        manual_seed(0);
        model = mlp ? new GeneratedDigitsMlp() : new GeneratedCnn();
        var plan = new TrainingPlan
        {
            ModelName = Model,
            SampleShape = sampleShape,
            Loss = Loss.CrossEntropy,
            Optimizer = mlp ? Optimizer.Adam : Optimizer.AdamW,
            LearningRate = 2e-3,
        };
        optimizer = Trainer.CreateOptimizer(plan, model);
        step = new TrainingStep(model, optimizer, plan.Loss, plan.GradientClipNorm);
        model.train();

        // One epoch before measuring: it pays for one-off native initialisation, and it checks that the epoch sees
        // every sample and actually trains (a random model gets about 10% right).
        long seen = Epoch(out long correct);
        if (seen != Samples)
            throw new InvalidOperationException($"{Model}: an epoch saw {seen} samples, expected {Samples}");
        if (correct < Samples / 2)
            throw new InvalidOperationException($"{Model}: only {correct} of {Samples} right during the first epoch; is it training?");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        optimizer.Dispose();
        model.Dispose();
        data.Dispose();
    }

    /// <summary>One epoch; returns the number of samples stepped over.</summary>
    [Benchmark(Description = "Epoch (3823 samples)")]
    public long Epoch() => Epoch(out _);

    private long Epoch(out long correct)
    {
        using var scope = NewDisposeScope();
        long seen = 0;
        correct = 0;
        foreach (var (x, y) in data.Batches(BatchSize, shuffle: true, seed: 0, epoch: 0))
        {
            using var stepScope = NewDisposeScope();
            var result = step.Run(x, y);
            if (!result.Applied)
                throw new InvalidOperationException($"{Model}: the loss became {result.Loss}");
            seen += x.shape[0];
            correct += result.Correct;
        }
        return seen;
    }

}
