using System;
using System.Linq;
using BenchmarkDotNet.Attributes;
using static TorchSharp.torch;

namespace ModelDsl.Benchmarks;

/// <summary>
/// One training step's worth of autograd work, forward + cross-entropy + backward on a batch of 64, for a generated
/// model against the same model written by hand. The hand-written model is the baseline, so the Ratio column is
/// generated / hand-written (target: at most 1.02).
/// </summary>
/// <remarks>
/// Both models are built from the same seed and checked to have identical parameters; both see the same input and
/// labels. Each invocation runs inside its own dispose scope (so no native memory accumulates) and zeroes the
/// gradients first. Torch runs on one thread so that two-core machines give stable figures.
/// </remarks>
[MedianColumn]
public class ForwardBackwardBenchmarks
{
    private const int Batch = 64;

    private nn.Module<Tensor, Tensor> handWritten = null!;
    private nn.Module<Tensor, Tensor> generated = null!;
    private Tensor input = null!;
    private Tensor labels = null!;

    /// <summary>The sample model compared: the MLP, the CNN, or a residual CNN (a graph model).</summary>
    [Params("Mlp", "Cnn", "ResCnn")]
    public string Model { get; set; } = "Mlp";

    [GlobalSetup]
    public void Setup()
    {
        set_num_threads(1);
        manual_seed(42);
        input = Model == "Mlp" ? randn(Batch, 64) : randn(Batch, 1, 8, 8);
        labels = randint(0, 10, new long[] { Batch }, dtype: ScalarType.Int64);

        manual_seed(7);
        handWritten = Model switch { "Mlp" => new HandWrittenMlp(), "ResCnn" => new HandWrittenResCnn(), _ => new HandWrittenCnn() };
        manual_seed(7);
        generated = Model switch { "Mlp" => new GeneratedMlp(), "ResCnn" => new GeneratedResCnn(), _ => new GeneratedCnn() };

        // Same seed, same layers created in the same order: the parameters must match exactly, or the comparison
        // would not be like for like.
        var a = handWritten.named_parameters().ToArray();
        var b = generated.named_parameters().ToArray();
        if (a.Length != b.Length)
            throw new InvalidOperationException($"{Model}: {a.Length} parameters by hand, {b.Length} generated");
        for (int i = 0; i < a.Length; i++)
        {
            if (a[i].name != b[i].name || !a[i].parameter.shape.SequenceEqual(b[i].parameter.shape) || !a[i].parameter.allclose(b[i].parameter, rtol: 0, atol: 0))
                throw new InvalidOperationException($"{Model}: parameter {a[i].name} differs from generated {b[i].name}");
        }

        // Both in training mode (Dropout active), as in a training loop.
        handWritten.train();
        generated.train();
        // One step each before measuring: the first call pays for one-off native initialisation.
        Step(handWritten);
        Step(generated);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        handWritten.Dispose();
        generated.Dispose();
        input.Dispose();
        labels.Dispose();
    }

    [Benchmark(Baseline = true, Description = "HandWritten")]
    public float HandWritten() => Step(handWritten);

    [Benchmark(Description = "Generated")]
    public float Generated() => Step(generated);

    private float Step(nn.Module<Tensor, Tensor> model)
    {
        using var scope = NewDisposeScope();
        model.zero_grad();
        var logits = model.forward(input);
        var loss = nn.functional.cross_entropy(logits, labels);
        loss.backward();
        return loss.item<float>();
    }
}
