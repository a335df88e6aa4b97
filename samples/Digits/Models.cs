using ModelDsl;
using TorchSharp.Modules;

namespace Digits;

/// <summary>A two-layer perceptron over the 64 pixel counts of an optdigits image.</summary>
[Model(Input = "B, 64")]
public partial class DigitsMlp
{
    [Linear(128)]  public partial Linear Hidden { get; }
    [ReLU]         public partial ReLU Act { get; }
    [Dropout(0.1)] public partial Dropout Drop { get; }
    [Linear(10)]   public partial Linear Output { get; }
}

/// <summary>A small CNN over the 8x8 image.</summary>
[Model(Input = "B, 1, 8, 8")]
public partial class DigitsCnn
{
    [Conv2d(16, 3, Padding = 1)] public partial Conv2d Conv1 { get; }
    [ReLU]                       public partial ReLU Act1 { get; }
    [Conv2d(32, 3, Padding = 1)] public partial Conv2d Conv2 { get; }
    [ReLU]                       public partial ReLU Act2 { get; }
    [MaxPool2d(2)]               public partial MaxPool2d Pool { get; }
    [Flatten]                    public partial Flatten Flat { get; }
    [Linear(64)]                 public partial Linear Hidden { get; }
    [ReLU]                       public partial ReLU Act3 { get; }
    [Linear(10)]                 public partial Linear Output { get; }
}
