using ModelDsl;
using TorchSharp.Modules;

namespace ModelDsl.Testing.Tests.Models;

/// <summary>The model whose generated code the snapshot test pins.</summary>
[Model(Input = "B, 1, 8, 8")]
public partial class Classifier
{
    [Conv2d(8, 3, Padding = 1)] public partial Conv2d Conv { get; }
    [ReLU]                      public partial ReLU Act { get; }
    [MaxPool2d(2)]              public partial MaxPool2d Pool { get; }
    [Flatten]                   public partial Flatten Flat { get; }
    [Linear(10)]                public partial Linear Output { get; }
}
