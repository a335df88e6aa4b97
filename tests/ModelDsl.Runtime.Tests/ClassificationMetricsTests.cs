using ModelDsl.Runtime.Inference;

namespace ModelDsl.Runtime.Tests;

public sealed class ClassificationMetricsTests
{
    [Fact]
    public void Metrics_MatchScikitLearnsDefinitions()
    {
        // y_true = [0,0,1,1,2,2,2], y_pred = [0,1,1,1,2,0,2]; scikit-learn's classification_report gives
        // class 0: p 0.5 r 0.5; class 1: p 2/3 r 1; class 2: p 1 r 2/3; accuracy 5/7.
        var m = new ClassificationMetrics(3, new long[] { 0, 0, 1, 1, 2, 2, 2 }, new long[] { 0, 1, 1, 1, 2, 0, 2 });
        Assert.Equal(new[] { new long[] { 1, 1, 0 }, new long[] { 0, 2, 0 }, new long[] { 1, 0, 2 } }, m.Confusion);
        Assert.Equal(5.0 / 7, m.Accuracy, 12);
        Assert.Equal(0.5, m.PerClass[0].Precision, 12);
        Assert.Equal(2.0 / 3, m.PerClass[1].Precision, 12);
        Assert.Equal(1.0, m.PerClass[1].Recall, 12);
        Assert.Equal(0.8, m.PerClass[1].F1, 12);
        Assert.Equal(0.8, m.PerClass[2].F1, 12);
        Assert.Equal(3, m.PerClass[2].Support);
        Assert.Equal((0.5 + 0.8 + 0.8) / 3, m.MacroAverage.F1, 12);
        Assert.Equal((0.5 * 2 + 0.8 * 2 + 0.8 * 3) / 7, m.WeightedAverage.F1, 12);
        Assert.Contains("confusion matrix", m.ToTable());
    }

    [Fact]
    public void ClassNeverPredicted_HasZeroPrecision_NotNaN()
    {
        var m = new ClassificationMetrics(2, new long[] { 0, 1 }, new long[] { 0, 0 });
        Assert.Equal(0, m.PerClass[1].Precision);
        Assert.Equal(0, m.PerClass[1].F1);
    }
}
