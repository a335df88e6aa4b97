using ModelDsl.Runtime.Distributed;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>The local SGD schedule and DiLoCo's outer step against the SEMANTICS.md §4 vectors.</summary>
public sealed class LocalSgdTests
{
    [Fact]
    public void PeriodicModelAverager_Warmup2Period3_AveragesAtSteps2_5_8()
    {
        var averager = new PeriodicModelAverager(period: 3, warmupSteps: 2);
        var averaged = Enumerable.Range(0, 10).Where(_ => averager.Advance()).ToArray();
        Assert.Equal(new[] { 2, 5, 8 }, averaged);
        Assert.Equal(10, averager.Step);
        Assert.True(averager.IsWarmup(1));
        Assert.False(averager.IsWarmup(2));
    }

    [Fact]
    public void PeriodicModelAverager_NoWarmup_AveragesTheFirstStepThenEveryPeriod()
    {
        var averager = new PeriodicModelAverager(period: 4);
        Assert.Equal(new[] { 0, 4, 8 }, Enumerable.Range(0, 12).Where(_ => averager.Advance()).ToArray());
    }

    [Theory]
    [InlineData(0, 0, "period")]
    [InlineData(1, -1, "warmupSteps")]
    public void PeriodicModelAverager_RejectsWhatPyTorchRejects(int period, int warmup, string parameter)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new PeriodicModelAverager(period, warmup));
        Assert.Equal(parameter, e.ParamName);
    }

    [Fact]
    public void OuterNesterov_DiLoCoVector_TwoRounds()
    {
        // θ0 = 1; locals [0.8, 0.6] → Δ = 0.3, θ1 = 0.601; locals [0.5, 0.4] → Δ = 0.151, buf = 0.421, θ2 = 0.23007.
        using var outer = new OuterNesterov(0.7, 0.9);
        using var theta = tensor(new[] { 1.0 });
        outer.Step(theta, tensor(new[] { (0.8 + 0.6) / 2 }));
        Assert.Equal(0.601, theta.item<double>(), 12);
        outer.Step(theta, tensor(new[] { (0.5 + 0.4) / 2 }));
        Assert.Equal(0.421, outer.Buffer!.item<double>(), 12);
        Assert.Equal(0.23007, theta.item<double>(), 12);
    }

    [Fact]
    public void OuterNesterov_SavedAndRestoredMomentum_ContinuesExactly()
    {
        // What a resumed DiLoCo run does: the second round after a save/restore equals the uninterrupted one.
        using var outer = new OuterNesterov(0.7, 0.9);
        using var theta = tensor(new[] { 1.0f, -2.0f });
        outer.Step(theta, tensor(new[] { 0.7f, -1.5f }));
        byte[] saved = outer.SaveBuffer()!;
        using var resumedTheta = theta.clone();

        outer.Step(theta, tensor(new[] { 0.45f, -1.0f }));
        using var resumed = new OuterNesterov(0.7, 0.9);
        resumed.RestoreBuffer(saved, 2, CPU);
        resumed.Step(resumedTheta, tensor(new[] { 0.45f, -1.0f }));
        Assert.Equal(theta.data<float>().ToArray(), resumedTheta.data<float>().ToArray());

        using var fresh = new OuterNesterov(0.7, 0.9);
        Assert.Throws<ArgumentException>(() => fresh.RestoreBuffer(saved, 3, CPU));
        Assert.Null(fresh.SaveBuffer());
    }

    [Fact]
    public void OuterNesterov_LearningRateOneMomentumZero_IsPlainAveraging()
    {
        using var outer = new OuterNesterov(1.0, 0.0);
        using var theta = tensor(new[] { 1.0 });
        outer.Step(theta, tensor(new[] { 0.7 }));
        Assert.Equal(0.7, theta.item<double>(), 12);
    }

    [Theory]
    [InlineData(0.0, 0.9)]
    [InlineData(0.7, 1.0)]
    [InlineData(0.7, -0.1)]
    public void OuterNesterov_RejectsOutOfRangeSettings(double lr, double momentum) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new OuterNesterov(lr, momentum));
}
