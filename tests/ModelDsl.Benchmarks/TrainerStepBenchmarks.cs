using System;
using System.Linq;
using BenchmarkDotNet.Attributes;
using ModelDsl.Runtime.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Benchmarks;

/// <summary>
/// One optimisation step on a batch of 64: the generated trainer's step (<see cref="TrainingStep"/> on the generated
/// model, with the optimiser <see cref="Trainer.CreateOptimizer"/> builds) against the same step written by hand in
/// TorchSharp on the hand-written model. The hand-written step is the baseline, so the Ratio column is
/// generated trainer / hand-written (target: at most 1.05).
/// </summary>
/// <remarks>
/// <para>
/// The hand-written step does what <see cref="TrainingStep.Run"/> does, call for call: forward, cross-entropy,
/// <c>loss.item()</c>, a finiteness check, <c>zero_grad</c>, backward, Adam's step, and the count of correct predictions
/// (<c>argmax(1).eq(y).sum().item()</c>). Gradient clipping is off on both sides (<c>gradientClipNorm: 0</c>).
/// </para>
/// <para>
/// Both models are built after <c>manual_seed(7)</c> and checked to have identical parameters; both optimisers are Adam
/// with lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay, no AMSGrad. <see cref="Setup"/> then runs one step on
/// each from the same RNG state and checks that both give the same loss, the same count of correct predictions and the
/// same updated parameters, so the two sides provably do the same work. Both models are in training mode, so Dropout
/// is active and BatchNorm uses batch statistics. Each invocation runs in its own dispose scope. Torch runs on one
/// thread.
/// </para>
/// </remarks>
[MedianColumn]
public class TrainerStepBenchmarks
{
    private const int Batch = 64;

    private nn.Module<Tensor, Tensor> handWritten = null!;
    private nn.Module<Tensor, Tensor> generated = null!;
    private OptimizerHelper handOptimizer = null!;
    private OptimizerHelper generatedOptimizer = null!;
    private TrainingStep trainerStep = null!;
    private Tensor input = null!;
    private Tensor labels = null!;

    /// <summary>The model stepped: the MLP or the CNN of <see cref="ForwardBackwardBenchmarks"/>.</summary>
    [Params("Mlp", "Cnn")]
    public string Model { get; set; } = "Mlp";

    [GlobalSetup]
    public void Setup()
    {
        set_num_threads(1);
        bool mlp = Model == "Mlp";
        manual_seed(42);
        input = mlp ? randn(Batch, 64) : randn(Batch, 1, 8, 8);
        labels = randint(0, 10, new long[] { Batch }, dtype: ScalarType.Int64);

        manual_seed(7);
        handWritten = mlp ? new HandWrittenMlp() : new HandWrittenCnn();
        manual_seed(7);
        generated = mlp ? new GeneratedMlp() : new GeneratedCnn();
        CheckSameParameters("after construction");

        // The hand-written side creates its optimiser directly; the generated side the way the trainer does.
        handOptimizer = optim.Adam(handWritten.parameters(), 1e-3, 0.9, 0.999, 1e-8, 0, false, false);
        var plan = new TrainingPlan
        {
            ModelName = "x",
            SampleShape = mlp ? new long[] { 64 } : new long[] { 1, 8, 8 },
            Loss = Loss.CrossEntropy,
            Optimizer = Optimizer.Adam,
        };
        generatedOptimizer = Trainer.CreateOptimizer(plan, generated);
        trainerStep = new TrainingStep(generated, generatedOptimizer, Loss.CrossEntropy, gradientClipNorm: 0);

        handWritten.train();
        generated.train();

        // One step each from the same RNG state (Dropout draws the same masks): same loss, same correct count, same
        // weights afterwards. Single-threaded CPU kernels are deterministic, so this is checked exactly.
        manual_seed(1);
        var a = HandWritten();
        manual_seed(1);
        var b = Generated();
        if (!a.Applied || !b.Applied || a.Loss != b.Loss || a.Correct != b.Correct)
            throw new InvalidOperationException($"{Model}: the two steps differ: hand-written {a}, trainer {b}");
        CheckSameParameters("after one step");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        handOptimizer.Dispose();
        generatedOptimizer.Dispose();
        handWritten.Dispose();
        generated.Dispose();
        input.Dispose();
        labels.Dispose();
    }

    [Benchmark(Baseline = true, Description = "HandWritten")]
    public StepResult HandWritten()
    {
        using var scope = NewDisposeScope();
        var output = handWritten.forward(input);
        var loss = nn.functional.cross_entropy(output, labels);
        double value = loss.item<float>();
        if (!double.IsFinite(value)) return new StepResult(value, 0, Applied: false);

        handOptimizer.zero_grad();
        loss.backward();
        handOptimizer.step();
        long correct = output.argmax(1).eq(labels).sum().item<long>();
        return new StepResult(value, correct, Applied: true);
    }

    [Benchmark(Description = "Trainer step")]
    public StepResult Generated()
    {
        using var scope = NewDisposeScope();
        return trainerStep.Run(input, labels);
    }

    private void CheckSameParameters(string when)
    {
        var a = handWritten.named_parameters().ToArray();
        var b = generated.named_parameters().ToArray();
        if (a.Length != b.Length)
            throw new InvalidOperationException($"{Model} {when}: {a.Length} parameters by hand, {b.Length} generated");
        for (int i = 0; i < a.Length; i++)
        {
            if (a[i].name != b[i].name || !a[i].parameter.shape.SequenceEqual(b[i].parameter.shape) || !a[i].parameter.allclose(b[i].parameter, rtol: 0, atol: 0))
                throw new InvalidOperationException($"{Model} {when}: parameter {a[i].name} differs from generated {b[i].name}");
        }
    }
}
