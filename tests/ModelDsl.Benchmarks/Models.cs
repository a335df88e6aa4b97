using ModelDsl;
using TorchSharp.Modules;

namespace ModelDsl.Benchmarks;

// The sample's models (samples/Digits/Models.cs), declared again here so that the generator runs on them in this
// project, and so that the benchmark does not move when the sample is retuned. HandWrittenModels.cs has the same
// models written directly against TorchSharp.

/// <summary>
/// The MLP the sample's DigitsMlp started as (the sample's own has since grown to two hidden layers), generated.
/// </summary>
[Model(Input = "B, 64")]
public partial class GeneratedMlp
{
    [Linear(128)]  public partial Linear Hidden { get; }
    [ReLU]         public partial ReLU Act { get; }
    [Dropout(0.1)] public partial Dropout Drop { get; }
    [Linear(10)]   public partial Linear Output { get; }
}

/// <summary>The sample's DigitsCnn (the main job), generated; without its [Train] attribute, which adds no layers.</summary>
[Model(Input = "B, 1, 8, 8")]
public partial class GeneratedCnn
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
/// The sample's current DigitsMlp (two hidden layers), generated; without its [Train] attribute, which adds no layers.
/// DigitsThroughputBenchmarks trains it on the real data. (The sample's DigitsCnn is <see cref="GeneratedCnn"/>.)
/// </summary>
[Model(Input = "B, 64")]
public partial class GeneratedDigitsMlp
{
    [Linear(512)]  public partial Linear Hidden1 { get; }
    [ReLU]         public partial ReLU Act1 { get; }
    [Dropout(0.4)] public partial Dropout Drop1 { get; }
    [Linear(256)]  public partial Linear Hidden2 { get; }
    [ReLU]         public partial ReLU Act2 { get; }
    [Dropout(0.4)] public partial Dropout Drop2 { get; }
    [Linear(10)]   public partial Linear Output { get; }
}

/// <summary>A residual CNN (a stem, one residual block with BatchNorms, the skip added back), generated: graph models' forward.</summary>
[Model(Input = "B, 1, 8, 8")]
public partial class GeneratedResCnn
{
    [Conv2d(32, 3, Padding = 1)]        public partial Conv2d Stem { get; }
    [ReLU]                              public partial ReLU StemAct { get; }
    [Conv2d(32, 3, Padding = 1)]        public partial Conv2d Conv1 { get; }
    [BatchNorm2d]                       public partial BatchNorm2d Norm1 { get; }
    [ReLU]                              public partial ReLU Act1 { get; }
    [Conv2d(32, 3, Padding = 1)]        public partial Conv2d Conv2 { get; }
    [BatchNorm2d]                       public partial BatchNorm2d Norm2 { get; }
    [Add(nameof(Norm2), nameof(StemAct))] public partial ModelDsl.Layers.Add Residual { get; }
    [ReLU]                              public partial ReLU Act2 { get; }
    [MaxPool2d(2)]                      public partial MaxPool2d Pool { get; }
    [Flatten]                           public partial Flatten Flat { get; }
    [Linear(10)]                        public partial Linear Output { get; }
}

/// <summary>
/// The ZeRO benchmark's model (<c>--zero</c>, ZeroBenchmarks): a wide MLP of four 1024 × 1024 Linear layers, Ψ = 4,198,400,
/// whose eight tensors split evenly over two ranks (each rank owns two weights and two biases), so the sharded terms
/// are exactly Ψ/2. zero_peer.py builds the same layers in PyTorch.
/// </summary>
[Model(Input = "B, 1024")]
public partial class ZeroMlp
{
    [Linear(1024)] public partial Linear Fc1 { get; }
    [ReLU]         public partial ReLU Act1 { get; }
    [Linear(1024)] public partial Linear Fc2 { get; }
    [ReLU]         public partial ReLU Act2 { get; }
    [Linear(1024)] public partial Linear Fc3 { get; }
    [ReLU]         public partial ReLU Act3 { get; }
    [Linear(1024)] public partial Linear Output { get; }
}
