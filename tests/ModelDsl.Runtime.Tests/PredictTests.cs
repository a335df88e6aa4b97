using ModelDsl.Runtime.Inference;
using ModelDsl.Runtime.Tests.Interop;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>Generated Predict and PredictProba: what they return, batching, the mode, and the input checks.</summary>
[Collection(GlobalTorchStateCollection.Name)]
public sealed class PredictTests
{
    private static Tensor Batch(long n) => (arange(n * 36, ScalarType.Float32) * 0.11f).sin().reshape(n, 1, 6, 6);

    [Fact]
    public void Predict_IsTheArgmaxOfTheOutput_AndPredictProba_ItsSoftmax()
    {
        using var model = InteropCnn.WithFixedWeights();
        var x = Batch(9);
        model.eval();
        var output = model.call(x);

        var classes = model.Predict(x);
        var proba = model.PredictProba(x);
        Assert.Equal(ScalarType.Int64, classes.dtype);
        Assert.Equal(new long[] { 9 }, classes.shape);
        Assert.Equal(output.argmax(1).data<long>().ToArray(), classes.data<long>().ToArray());
        Assert.Equal(new long[] { 9, 5 }, proba.shape);
        Assert.True(proba.allclose(output.softmax(1), 1e-6, 1e-7));
        Assert.True(proba.sum(1).allclose(ones(9), 1e-6, 1e-6));
    }

    [Fact]
    public void SmallBatches_GiveTheSameResult_AndTheModeIsRestored()
    {
        using var model = InteropCnn.WithFixedWeights();
        model.train();
        var x = Batch(10);
        var whole = model.PredictProba(x);
        var inThrees = model.PredictProba(x, batchSize: 3);
        Assert.True(whole.allclose(inThrees, 1e-6, 1e-7));
        // Batch norm in eval mode: a sample's prediction does not depend on the rest of its batch.
        Assert.True(model.PredictProba(x.narrow(0, 4, 1)).allclose(whole.narrow(0, 4, 1), 1e-6, 1e-7));
        Assert.True(model.training);
        Assert.False(model.PredictProba(x).requires_grad);
    }

    [Fact]
    public void BinaryModel_PredictsZeroOrOne_WithTwoProbabilities()
    {
        using var model = new BinaryNet();
        var x = linspace(-3, 3, 20).reshape(5, 4);
        model.eval();
        var logit = model.call(x).reshape(5);
        Assert.Equal(logit.gt(0).to_type(ScalarType.Int64).data<long>().ToArray(), model.Predict(x).data<long>().ToArray());
        var proba = model.PredictProba(x);
        Assert.Equal(new long[] { 5, 2 }, proba.shape);
        Assert.True(proba.select(1, 1).allclose(logit.sigmoid(), 1e-6, 1e-7));
        Assert.Equal(ModelOutput.BinaryLogit, BinaryNet.Signature.Output);
    }

    [Fact]
    public void ModelWithoutTrain_PredictsItsOutput_AndHasNoPredictProba()
    {
        using var model = new SequenceRegressor();
        var x = randn(2, 7, 8);
        model.eval();
        Assert.True(model.Predict(x).allclose(model.call(x)));
        Assert.Equal(ModelOutput.Values, SequenceRegressor.Signature.Output);
        Assert.Null(typeof(SequenceRegressor).GetMethod("PredictProba"));
        Assert.NotNull(typeof(InteropCnn).GetMethod("PredictProba"));
    }

    [Fact]
    public void OneSampleWithoutBatchDim_IsAClearError_WithTheFix()
    {
        using var model = InteropCnn.WithFixedWeights();
        var e = Assert.Throws<ArgumentException>(() => model.Predict(zeros(1, 6, 6)));
        Assert.StartsWith("InteropCnn expects input (B, 1, 6, 6) (4 dims, the first the batch), got a tensor of shape [1, 6, 6]; " +
                          "this looks like one sample without the batch dimension: pass x.unsqueeze(0)", e.Message);
    }

    [Fact]
    public void WrongSize_NamesTheDimension()
    {
        using var model = InteropCnn.WithFixedWeights();
        var e = Assert.Throws<ArgumentException>(() => model.PredictProba(zeros(2, 1, 8, 8)));
        Assert.StartsWith("InteropCnn expects input (B, 1, 6, 6), got a tensor of shape [2, 1, 8, 8]: dimension 2 is 8, the model declares 6", e.Message);
    }

    [Fact]
    public void WrongRank_AndWrongDType_AreClearErrors()
    {
        using var model = InteropCnn.WithFixedWeights();
        var rank = Assert.Throws<ArgumentException>(() => model.Predict(zeros(2, 36)));
        Assert.StartsWith("InteropCnn expects input (B, 1, 6, 6) (4 dims, the first the batch), got a tensor of shape [2, 36]", rank.Message);
        Assert.DoesNotContain("unsqueeze", rank.Message);
        var dtype = Assert.Throws<ArgumentException>(() => model.Predict(zeros(new long[] { 2, 1, 6, 6 }, ScalarType.Int64)));
        Assert.StartsWith("InteropCnn takes float32 values, got a Int64 tensor", dtype.Message);
    }

    [Fact]
    public void SymbolicDims_MustAgree_AndOthersMayBeAnything()
    {
        using var model = new SequenceRegressor();
        Assert.Equal(new long[] { 3, 11, 3 }, model.Predict(zeros(3, 11, 8)).shape);
        var e = Assert.Throws<ArgumentException>(() => model.Predict(zeros(3, 11, 9)));
        Assert.Contains("dimension 2 is 9, the model declares 8", e.Message);
        Assert.Equal("(B, T, 8)", SequenceRegressor.Signature.Input);
    }

    [Fact]
    public void Float64Input_IsConverted()
    {
        using var model = InteropCnn.WithFixedWeights();
        var x = Batch(2);
        Assert.Equal(model.Predict(x).data<long>().ToArray(), model.Predict(x.to_type(ScalarType.Float64)).data<long>().ToArray());
    }
}
