using ModelDsl;
using ModelDsl.Layers;
using TorchSharp.Modules;

namespace Mnist;

/// <summary>
/// A small ResNet over a binarised MNIST digit (1x28x28, pixels 0/1): a 3x3 stem, three stages of two residual
/// blocks (16, 32 and 64 channels; the second and third stages halve the size, their first block's skip a strided
/// 1x1 projection), a global average pool and a linear classifier. Declared entirely with attributes: each block is
/// a composed [Model] whose [Add] joins its convolutions' output with its input (or the projection, [From] the input).
/// </summary>
[Model(Input = "B, 1, 28, 28")]
[Train(Loss.CrossEntropy, Optimizer.AdamW, LearningRate = 2e-3, Epochs = 10, BatchSize = 64, Seed = 0,
       Schedule = Schedule.Cosine, WarmupEpochs = 1,
       Data = "data/mnist_train.csv", TestData = "data/mnist_test.csv")]
// The plan: half of every block's inner channels (Conv1's outputs, Norm1, Conv2's inputs; each Stage1 copy by its own
// weights), two fine-tune epochs, int8 for the classifier; the BatchNorms are then folded (README: "The optimisation plan").
[Prune(PruneMethod.Structured, 0.5, Targets = new[] { "Stage1.*.Conv1", "Stage2Down.Conv1", "Stage2.Conv1", "Stage3Down.Conv1", "Stage3.Conv1" },
       FineTuneEpochs = 2)]
[Quantize(QuantizeMode.DynamicInt8)]
public partial class MnistResNet
{
    [Conv2d(16, 3, Padding = 1, Bias = false)] public partial Conv2d Stem { get; }
    [BatchNorm2d]                              public partial BatchNorm2d StemNorm { get; }
    [ReLU]                                     public partial ReLU StemAct { get; }
    [Block(Repeat = 2)]                        public partial Residual16 Stage1 { get; }      // (B, 16, 28, 28)
    [Block]                                    public partial Downsample32 Stage2Down { get; } // (B, 32, 14, 14)
    [Block]                                    public partial Residual32 Stage2 { get; }
    [Block]                                    public partial Downsample64 Stage3Down { get; } // (B, 64, 7, 7)
    [Block]                                    public partial Residual64 Stage3 { get; }
    [AdaptiveAvgPool2d(1)]                     public partial AdaptiveAvgPool2d Pool { get; }
    [Flatten]                                  public partial Flatten Flat { get; }
    [Linear(10)]                               public partial Linear Output { get; }
}

/// <summary>A residual block of 16 channels: conv-BN-ReLU-conv-BN, plus the input, then ReLU.</summary>
[Model(Input = "B, 16, 28, 28")]
public partial class Residual16
{
    [Conv2d(16, 3, Padding = 1, Bias = false)] public partial Conv2d Conv1 { get; }
    [BatchNorm2d]                              public partial BatchNorm2d Norm1 { get; }
    [ReLU]                                     public partial ReLU Act1 { get; }
    [Conv2d(16, 3, Padding = 1, Bias = false)] public partial Conv2d Conv2 { get; }
    [BatchNorm2d]                              public partial BatchNorm2d Norm2 { get; }
    [Add(nameof(Norm2), "input")]              public partial Add Sum { get; }
    [ReLU]                                     public partial ReLU Act2 { get; }
}

/// <summary>The first block of the second stage: 16 → 32 channels at stride 2, the skip a strided 1x1 projection.</summary>
[Model(Input = "B, 16, 28, 28")]
public partial class Downsample32
{
    [Conv2d(32, 3, Stride = 2, Padding = 1, Bias = false)] public partial Conv2d Conv1 { get; }
    [BatchNorm2d]                                          public partial BatchNorm2d Norm1 { get; }
    [ReLU]                                                 public partial ReLU Act1 { get; }
    [Conv2d(32, 3, Padding = 1, Bias = false)]             public partial Conv2d Conv2 { get; }
    [BatchNorm2d]                                          public partial BatchNorm2d Norm2 { get; }
    [Conv2d(32, 1, Stride = 2, Bias = false, From = "input")] public partial Conv2d Project { get; }
    [BatchNorm2d]                                          public partial BatchNorm2d ProjectNorm { get; }
    [Add(nameof(Norm2), nameof(ProjectNorm))]              public partial Add Sum { get; }
    [ReLU]                                                 public partial ReLU Act2 { get; }
}

/// <summary>A residual block of 32 channels.</summary>
[Model(Input = "B, 32, 14, 14")]
public partial class Residual32
{
    [Conv2d(32, 3, Padding = 1, Bias = false)] public partial Conv2d Conv1 { get; }
    [BatchNorm2d]                              public partial BatchNorm2d Norm1 { get; }
    [ReLU]                                     public partial ReLU Act1 { get; }
    [Conv2d(32, 3, Padding = 1, Bias = false)] public partial Conv2d Conv2 { get; }
    [BatchNorm2d]                              public partial BatchNorm2d Norm2 { get; }
    [Add(nameof(Norm2), "input")]              public partial Add Sum { get; }
    [ReLU]                                     public partial ReLU Act2 { get; }
}

/// <summary>The first block of the third stage: 32 → 64 channels at stride 2, the skip a strided 1x1 projection.</summary>
[Model(Input = "B, 32, 14, 14")]
public partial class Downsample64
{
    [Conv2d(64, 3, Stride = 2, Padding = 1, Bias = false)] public partial Conv2d Conv1 { get; }
    [BatchNorm2d]                                          public partial BatchNorm2d Norm1 { get; }
    [ReLU]                                                 public partial ReLU Act1 { get; }
    [Conv2d(64, 3, Padding = 1, Bias = false)]             public partial Conv2d Conv2 { get; }
    [BatchNorm2d]                                          public partial BatchNorm2d Norm2 { get; }
    [Conv2d(64, 1, Stride = 2, Bias = false, From = "input")] public partial Conv2d Project { get; }
    [BatchNorm2d]                                          public partial BatchNorm2d ProjectNorm { get; }
    [Add(nameof(Norm2), nameof(ProjectNorm))]              public partial Add Sum { get; }
    [ReLU]                                                 public partial ReLU Act2 { get; }
}

/// <summary>A residual block of 64 channels.</summary>
[Model(Input = "B, 64, 7, 7")]
public partial class Residual64
{
    [Conv2d(64, 3, Padding = 1, Bias = false)] public partial Conv2d Conv1 { get; }
    [BatchNorm2d]                              public partial BatchNorm2d Norm1 { get; }
    [ReLU]                                     public partial ReLU Act1 { get; }
    [Conv2d(64, 3, Padding = 1, Bias = false)] public partial Conv2d Conv2 { get; }
    [BatchNorm2d]                              public partial BatchNorm2d Norm2 { get; }
    [Add(nameof(Norm2), "input")]              public partial Add Sum { get; }
    [ReLU]                                     public partial ReLU Act2 { get; }
}
