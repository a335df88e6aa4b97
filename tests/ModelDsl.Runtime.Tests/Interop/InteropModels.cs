using ModelDsl;
using TorchSharp.Modules;
using static TorchSharp.torch;

// Small models for the model-file and prediction tests. InteropCnn mirrors interop_cnn() in pytorch_interop.py:
// the same layers under the same names, so state dicts move between the two unchanged.
namespace ModelDsl.Runtime.Tests.Interop;

[Model(Input = "B, 1, 6, 6")]
[Train(Loss.CrossEntropy, Optimizer.SGD)]
public partial class InteropCnn
{
    [Conv2d(4, 3, Padding = 1)] public partial Conv2d Conv1 { get; }
    [BatchNorm2d]               public partial BatchNorm2d Norm { get; }
    [ReLU]                      public partial ReLU Act { get; }
    [MaxPool2d(2)]              public partial MaxPool2d Pool { get; }
    [Flatten]                   public partial Flatten Flat { get; }
    [Linear(5)]                 public partial Linear Head { get; }

    private static Tensor tensor_from(float[] values, long[] shape) => tensor(values, shape);

    /// <summary>A model whose every tensor is set by formula (no RNG), so its exports are the same bytes everywhere.</summary>
    public static InteropCnn WithFixedWeights()
    {
        var model = new InteropCnn();
        using var noGrad = no_grad();
        int k = 0;
        foreach (var (name, tensor) in model.state_dict())
        {
            k++;
            if (tensor.dtype == ScalarType.Int64) tensor.fill_(5);
            else if (name.EndsWith("running_var", StringComparison.Ordinal)) tensor.copy_(tensor_from(Enumerable.Range(0, (int)tensor.numel()).Select(i => 0.5f + 0.25f * i).ToArray(), tensor.shape));
            else
            {
                // Exact arithmetic on small integers: the same floats on every machine (a sin() could differ in the last bit by CPU).
                var values = Enumerable.Range(0, (int)tensor.numel()).Select(i => ((i * 37 + k * 11) % 101) / 101f - 0.5f).ToArray();
                tensor.copy_(tensor_from(values, tensor.shape));
            }
        }
        return model;
    }
}

/// <summary>InteropCnn with a wider head: the same names, one shape differs.</summary>
[Model(Input = "B, 1, 6, 6")]
public partial class InteropCnnWide
{
    [Conv2d(4, 3, Padding = 1)] public partial Conv2d Conv1 { get; }
    [BatchNorm2d]               public partial BatchNorm2d Norm { get; }
    [ReLU]                      public partial ReLU Act { get; }
    [MaxPool2d(2)]              public partial MaxPool2d Pool { get; }
    [Flatten]                   public partial Flatten Flat { get; }
    [Linear(6)]                 public partial Linear Head { get; }
}

/// <summary>No [Train]: Predict returns the output itself, and there is no PredictProba.</summary>
[Model(Input = "B, T, 8")]
public partial class SequenceRegressor
{
    [Linear(3)] public partial Linear Proj { get; }
}

/// <summary>A binary classifier: one logit per sample.</summary>
[Model(Input = "B, 4")]
[Train(Loss.BCEWithLogits, Optimizer.Adam)]
public partial class BinaryNet
{
    [Linear(1)] public partial Linear Logit { get; }
}
