using System.Collections.Generic;
using ModelDsl.Runtime.Training;
using ModelDsl.Shapes;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// libtorch is the oracle for MD0404: for every loss and every output shape, the compile-time rule
/// (<see cref="LossRules"/>, linked from src/Shared) accepts the output exactly when the trainer's real step
/// (<see cref="TrainingStep"/>: forward, loss, backward, accuracy count) runs on it with the targets a data file
/// gives, one label per row.
/// </summary>
public class LossOracleTests
{
    private const long Batch = 3;

    // Per-sample output dims (after the batch), and whether dimension 0 holds 2B rows instead of B (a batch
    // dimension merged away by [Flatten(StartDim = 0)]).
    public static IEnumerable<object[]> Cases()
    {
        var shapes = new[]
        {
            new long[0], new long[] { 1 }, new long[] { 2 }, new long[] { 10 }, new long[] { 1, 1 }, new long[] { 3, 4 },
            new long[] { 1, 1, 1 }, new long[] { 3, 4, 4 }, new long[] { 1, 3 }, new long[] { 2, 1 },
        };
        foreach (var loss in LossRules.Losses)
        {
            foreach (var shape in shapes)
                yield return new object[] { loss, shape, false };
            yield return new object[] { loss, new long[] { 10 }, true };
            yield return new object[] { loss, new long[] { 1 }, true };
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void CompileTimeRule_AcceptsExactlyWhatTheTrainingStepRuns(string loss, long[] perSample, bool batchMerged)
    {
        var dims = new List<Dim> { batchMerged ? Dim.Sym("B*2") : Dim.Sym("B") };
        dims.AddRange(perSample.Select(Dim.Of));
        string? problem = LossRules.Problem(loss, dims, Dim.Sym("B"), outputIsInteger: false);

        bool ran = RunsInTheTrainer(loss, perSample, batchMerged ? 2 * Batch : Batch, out string? error);

        // One deliberate difference: libtorch runs a classification loss over a single class (its loss is always 0,
        // nothing is learnt); the compiler rejects it.
        bool singleClass = loss is "CrossEntropy" or "NLL" && perSample.SequenceEqual(new long[] { 1 }) && !batchMerged;
        if (singleClass)
        {
            Assert.True(ran, error);
            Assert.NotNull(problem);
            return;
        }
        Assert.True(ran == (problem is null),
            $"Loss.{loss} on {ShapeText.Format(dims)}: the compiler says {(problem ?? "it fits")}; libtorch {(ran ? "ran the step" : "failed: " + error)}");
    }

    private static bool RunsInTheTrainer(string loss, long[] perSample, long rows, out string? error)
    {
        using var scope = NewDisposeScope();
        manual_seed(0);
        var model = new Scale();
        var optimizer = torch.optim.SGD(model.parameters(), 0.1);
        var kind = Enum.Parse<Loss>(loss);
        var step = new TrainingStep(model, optimizer, kind, 0);

        var x = randn(new[] { rows }.Concat(perSample).ToArray());
        // What a data file gives for a batch of B rows: one label each.
        long classes = perSample.Length > 0 ? perSample[0] : 2;
        var y = kind is Loss.CrossEntropy or Loss.NLL
            ? randint(0, Math.Max(1, classes), new[] { Batch }, dtype: ScalarType.Int64)
            : rand(new[] { Batch });
        try
        {
            step.Run(x, y);
            error = null;
            return true;
        }
        catch (Exception e)
        {
            error = e.Message.Split('\n')[0];
            return false;
        }
    }

    /// <summary>The smallest trainable module whose output has the shape of its input.</summary>
    private sealed class Scale : nn.Module<Tensor, Tensor>
    {
        private readonly TorchSharp.Modules.Parameter _w;

        public Scale() : base(nameof(Scale))
        {
            _w = new TorchSharp.Modules.Parameter(ones(1));
            register_parameter("w", _w);
        }

        public override Tensor forward(Tensor input) => input * _w;
    }
}
