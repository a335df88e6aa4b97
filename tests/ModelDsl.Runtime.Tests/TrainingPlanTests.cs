using System.Collections.Generic;
using System.Reflection;
using ModelDsl.Runtime.Training;

namespace ModelDsl.Runtime.Tests;

public class TrainingPlanTests
{
    private static readonly TrainingPlan Plan = new()
    {
        ModelName = "M", SampleShape = new long[] { 1, 8, 8 }, Loss = Loss.CrossEntropy, Optimizer = Optimizer.SGD,
        Data = "a.csv", TestData = "b.csv", Classes = 10,
    };

    /// <summary>The plan properties a resumed run may change, each with a stated reason; nothing else.</summary>
    private static readonly string[] Excluded =
    {
        nameof(TrainingPlan.Data), nameof(TrainingPlan.Epochs), nameof(TrainingPlan.TestData),
        nameof(TrainingPlan.Backend), nameof(TrainingPlan.BucketSizeMB),
        nameof(TrainingPlan.Passes), nameof(TrainingPlan.ParametersAfterPasses),
        nameof(TrainingPlan.EarlyStoppingPatience),
        // The [Loss] method is in the fingerprint by name (LossMethod), not as the delegate; restarts do not change an epoch.
        nameof(TrainingPlan.CustomLoss), nameof(TrainingPlan.MaxRestarts),
        nameof(TrainingPlan.Header), nameof(TrainingPlan.LabelColumn),
        // Sharding takes DDP's steps and every level partitions alike: a run resumes at any level.
        nameof(TrainingPlan.Shard),
        // The memory plan's facts come from the declaration; the budget is a compile-time check.
        nameof(TrainingPlan.Memory), nameof(TrainingPlan.MemoryBudgetMB),
        // Checkpoints hold the float32 master weights in either precision: a run resumes in the other.
        nameof(TrainingPlan.Precision),
        // Recomputation gives the plain run's gradients: a run resumes with it on or off.
        nameof(TrainingPlan.Recompute),
    };

    [Fact]
    public void Fingerprint_ChangesWithEverySettableProperty_ButTheExcludedOnes()
    {
        var settable = typeof(TrainingPlan).GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.SetMethod is not null).ToArray();
        Assert.True(settable.Length > 15);
        foreach (var property in settable)
        {
            var changed = Plan with { };
            property.SetValue(changed, Other(property.GetValue(Plan), property.PropertyType));
            bool differs = changed.Fingerprint() != Plan.Fingerprint();
            Assert.True(differs != Excluded.Contains(property.Name),
                $"{property.Name}: fingerprint {(differs ? "changes" : "does not change")} when it changes");
        }
    }

    [Fact]
    public void PerStepSchedule_SamplesTheCurveAtFractionalEpochs()
    {
        var plan = new TrainingPlan { ModelName = "M", SampleShape = new long[] { 1 }, LearningRate = 1.0, Epochs = 4, Schedule = Schedule.Cosine, WarmupEpochs = 0.5 };
        // Warm-up lr·t/W: a quarter epoch in, half the rate; at W the full rate.
        Assert.Equal(0.5, plan.LearningRateAt(0.25), 12);
        Assert.Equal(1.0, plan.LearningRateAt(0.5), 12);
        // Cosine over E − W = 3.5 epochs: half-way (t = 2.25) is half the rate, the end is 0.
        Assert.Equal(0.5, plan.LearningRateAt(2.25), 12);
        Assert.Equal(0.0, plan.LearningRateAt(4.0), 12);
        // The per-epoch form never exceeds the rate with a fractional warm-up.
        Assert.Equal(1.0, plan.LearningRateAt(0), 12);
    }

    [Fact]
    public void Fingerprint_HoldsTheEpochCount_OnlyUnderTheCosineSchedule()
    {
        var cosine = Plan with { Schedule = Schedule.Cosine };
        Assert.NotEqual(cosine.Fingerprint(), (cosine with { Epochs = cosine.Epochs + 1 }).Fingerprint());
        Assert.Equal(Plan.Fingerprint(), (Plan with { Epochs = Plan.Epochs + 1 }).Fingerprint());
    }

    [Fact]
    public void Fingerprint_ComparesTheEffectiveWeightDecay()
    {
        var adamW = Plan with { Optimizer = Optimizer.AdamW };
        Assert.Equal(adamW.Fingerprint(), (adamW with { WeightDecay = 0.01 }).Fingerprint());
        Assert.NotEqual(adamW.Fingerprint(), (adamW with { WeightDecay = 0.02 }).Fingerprint());
    }

    private static object Other(object? value, Type type) => value switch
    {
        string s => s + "x",
        null when type == typeof(bool?) => true,
        bool b => !b,
        int i => i + 1,
        long l => l + 1,
        double d => double.IsNaN(d) ? 0.5 : d + 0.25,
        long[] dims => dims.Append(2L).ToArray(),
        IReadOnlyList<ModelDsl.Runtime.Optimization.OptimizationPass> passes => passes.Append(new ModelDsl.Runtime.Optimization.QuantizePass(QuantizeMode.DynamicInt8)).ToArray(),
        Enum e => Enum.GetValues(type).Cast<object>().First(v => !v.Equals(e)),
        null when type == typeof(MemoryModel) => new MemoryModel(new long[] { 10 }, 4, 2),
        null when type == typeof(Func<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>) =>
            (Func<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>)((output, _) => output.sum()),
        _ => throw new InvalidOperationException($"add a way to change a {type.Name} plan property to this test"),
    };
}
