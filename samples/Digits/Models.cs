using ModelDsl;
using TorchSharp.Modules;

namespace Digits;

/// <summary>
/// A small CNN over an optdigits image seen as 1x8x8 pixel counts (0..16): the main job. It reaches about 99%
/// on the writer-independent test set in 20 epochs. Then its optimisation plan runs: half of the channels of both
/// convolutions and half of the hidden layer's neurons are removed (the BatchNorms, Conv2's inputs, Hidden's inputs
/// and the output layer shrink with them) and the model is fine-tuned for four epochs; the BatchNorms are then folded
/// into the convolutions. The result is a quarter of the fp32 file, within a point of its accuracy and about twice as
/// fast at batch 1 and 64 (docs/benchmarks.md). The plan declares no [Quantize]: on Linear layers this small,
/// quantising the activations at every call costs more than the int8 product saves (the pipeline would warn).
/// </summary>
[Model(Input = "B, 1, 8, 8")]
[Train(Loss.CrossEntropy, Optimizer.AdamW, LearningRate = 2e-3, Epochs = 20, BatchSize = 64, Seed = 0,
       Schedule = Schedule.Cosine, WarmupEpochs = 1, FeatureScale = 1.0 / 16,
       Data = "data/optdigits.tra", TestData = "data/optdigits.tes")]
[Prune(PruneMethod.Structured, 0.5, Targets = new[] { nameof(Conv1), nameof(Conv2), nameof(Hidden) }, FineTuneEpochs = 4)]
public partial class DigitsCnn
{
    [Conv2d(32, 3, Padding = 1)] public partial Conv2d Conv1 { get; }
    [BatchNorm2d]                public partial BatchNorm2d Norm1 { get; }
    [ReLU]                       public partial ReLU Act1 { get; }
    [Conv2d(64, 3, Padding = 1)] public partial Conv2d Conv2 { get; }
    [BatchNorm2d]                public partial BatchNorm2d Norm2 { get; }
    [ReLU]                       public partial ReLU Act2 { get; }
    [MaxPool2d(2)]               public partial MaxPool2d Pool { get; }
    [Dropout(0.25)]              public partial Dropout Drop1 { get; }
    [Flatten]                    public partial Flatten Flat { get; }
    [Linear(128)]                public partial Linear Hidden { get; }
    [ReLU]                       public partial ReLU Act3 { get; }
    [Dropout(0.5)]               public partial Dropout Drop2 { get; }
    [Linear(10)]                 public partial Linear Output { get; }
}

/// <summary>
/// A two-hidden-layer perceptron over the 64 pixel counts: <c>dotnet run -- mlp</c>. About 97% on the test set.
/// </summary>
[Model(Input = "B, 64")]
[Train(Loss.CrossEntropy, Optimizer.Adam, LearningRate = 2e-3, Epochs = 40, BatchSize = 64, Seed = 0,
       Schedule = Schedule.Cosine, FeatureScale = 1.0 / 16, ValidationFraction = 0,
       Data = "data/optdigits.tra", TestData = "data/optdigits.tes")]
public partial class DigitsMlp
{
    [Linear(512)]  public partial Linear Hidden1 { get; }
    [ReLU]         public partial ReLU Act1 { get; }
    [Dropout(0.4)] public partial Dropout Drop1 { get; }
    [Linear(256)]  public partial Linear Hidden2 { get; }
    [ReLU]         public partial ReLU Act2 { get; }
    [Dropout(0.4)] public partial Dropout Drop2 { get; }
    [Linear(10)]   public partial Linear Output { get; }
}
