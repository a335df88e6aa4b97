using ModelDsl;
using TorchSharp.Modules;

// Models that exercise every layer kind and every shape argument; the generator compiles them, libtorch runs
// them, and ShapeOracleTests compares what libtorch produced with what the compiler inferred.
namespace ModelDsl.Runtime.Tests.Oracle;

[Model(Input = "B, 20")]
public partial class DenseZoo
{
    [Linear(16)]                   public partial Linear L1 { get; }
    [BatchNorm1d]                  public partial BatchNorm1d Bn { get; }
    [GELU]                         public partial GELU Gelu { get; }
    [Dropout(0.2)]                 public partial Dropout Drop { get; }
    [LayerNorm]                    public partial LayerNorm Ln { get; }
    [Linear(16, 8, Bias = false)]  public partial Linear L2 { get; }
    [Tanh]                         public partial Tanh Tanh { get; }
    [Sigmoid]                      public partial Sigmoid Sig { get; }
    [SiLU]                         public partial SiLU Silu { get; }
    [Identity]                     public partial Identity Id { get; }
    [Softmax(1)]                   public partial Softmax Soft { get; }
    [LogSoftmax(-1)]               public partial LogSoftmax LogSoft { get; }
}

[Model(Input = "B, 3, 33, 29")]
public partial class Conv2dZoo
{
    [Conv2d(8, 3, Stride = 2, Padding = 1)]          public partial Conv2d C1 { get; }
    [BatchNorm2d(8)]                                 public partial BatchNorm2d Bn { get; }
    [ReLU]                                           public partial ReLU Act { get; }
    [Conv2d(8, 16, 3, Dilation = 2, Groups = 4)]     public partial Conv2d C2 { get; }
    [MaxPool2d(3, Stride = 1, Padding = 1)]          public partial MaxPool2d P1 { get; }
    [Conv2d(4, 1, Bias = false)]                     public partial Conv2d C3 { get; }
    [AvgPool2d(2, Padding = 1)]                      public partial AvgPool2d P2 { get; }
    [MaxPool2d(2, Stride = 1, Dilation = 2)]         public partial MaxPool2d P3 { get; }
    [AdaptiveAvgPool2d(3, 2)]                        public partial AdaptiveAvgPool2d Gap { get; }
    [Flatten]                                        public partial Flatten Flat { get; }
    [Linear(5)]                                      public partial Linear Head { get; }
}

[Model(Input = "B, 4, 30")]
public partial class Conv1dZoo
{
    [Conv1d(6, 5, Stride = 3, Padding = 2, Dilation = 2)] public partial Conv1d C1 { get; }
    [BatchNorm1d]                                         public partial BatchNorm1d Bn { get; }
    [ReLU]                                                public partial ReLU Act { get; }
    [Flatten(StartDim = 1, EndDim = 2)]                   public partial Flatten Flat { get; }
    [Linear(7)]                                           public partial Linear Head { get; }
}

[Model(Input = "B, T", InputType = DType.Int64)]
public partial class TokenZoo
{
    [Embedding(50, 12)]                  public partial Embedding Embed { get; }
    [LayerNorm(12)]                      public partial LayerNorm Ln { get; }
    [Linear(12)]                         public partial Linear Mix { get; }
    [Flatten(StartDim = 0, EndDim = 1)]  public partial Flatten Tokens { get; }
    [Linear(4)]                          public partial Linear Head { get; }
}

[Model(Input = "B, N, 12")]
public partial class Block
{
    [LayerNorm]   public partial LayerNorm Ln { get; }
    [Linear(24)]  public partial Linear Up { get; }
    [GELU]        public partial GELU Act { get; }
    [Linear(12)]  public partial Linear Down { get; }
}

[Model(Input = "B, 10, 12")]
public partial class Stack
{
    public partial Block First { get; }
    public partial Block Second { get; }
    [Flatten]     public partial Flatten Flat { get; }
    [Linear(3)]   public partial Linear Head { get; }
}


// Rectangular windows: (height, width) kernels as arrays and per-axis stride, padding and dilation, emitted through
// TorchSharp's tuple overloads.
[Model(Input = "B, 2, 17, 23")]
public partial class RectZoo
{
    [Conv2d(6, new[] { 3, 5 }, StrideW = 2, PaddingH = 1, PaddingW = 2, DilationW = 2)] public partial Conv2d C1 { get; }
    [MaxPool2d(new[] { 2, 3 }, StrideW = 1, PaddingW = 1)]                               public partial MaxPool2d P1 { get; }
    [Conv2d(6, 4, new[] { 1, 3 }, Groups = 2, StrideH = 2, Bias = false)]                public partial Conv2d C2 { get; }
    [AvgPool2d(new[] { 3, 1 }, StrideH = 2, PaddingH = 1)]                               public partial AvgPool2d P2 { get; }
    [MaxPool2d(2, StrideH = 1, DilationW = 2)]                                           public partial MaxPool2d P3 { get; }
    [Flatten]                                                                            public partial Flatten Flat { get; }
    [Linear(5)]                                                                          public partial Linear Head { get; }
}

// The Transformer layers: token ids (B, T) through embeddings, causal and non-causal blocks, and a tied head.
[Model(Input = "B, T", InputType = DType.Int64)]
public partial class GptZoo
{
    [Embedding(50, 16)]                                      public partial Embedding Embed { get; }
    [PositionalEmbedding(8)]                                 public partial PositionalEmbedding Positions { get; }
    [TransformerBlock(Heads = 2, Repeat = 2)]                public partial TransformerBlock Blocks { get; }
    [TransformerBlock(Heads = 4, Causal = false, MlpRatio = 2, Dropout = 0.1)] public partial TransformerBlock Encoder { get; }
    [LayerNorm]                                              public partial LayerNorm Norm { get; }
    [Linear(50, TiedTo = nameof(Embed))]                     public partial Linear Head { get; }
}

// The recurrent layers: inferred and explicit input sizes, stacked and bidirectional, batch-first and not (then the
// declared (B, T, C) is read as (T, B, C), which keeps the shape rule).
[Model(Input = "B, T, 6")]
public partial class RecurrentZoo
{
    [LSTM(8)]                                         public partial LSTM First { get; }
    [GRU(8, 5, NumLayers = 2, Bidirectional = true)]  public partial GRU Both { get; }
    [LSTM(10, 4, NumLayers = 3, BatchFirst = false)]  public partial LSTM TimeFirst { get; }
    [GRU(3, Bidirectional = true, BatchFirst = false)] public partial GRU Last { get; }
    [Linear(2)]                                       public partial Linear Head { get; }
}
