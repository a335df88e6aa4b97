using ModelDsl;
using TorchSharp;
using TorchSharp.Modules;

namespace CharGpt;

/// <summary>
/// A decoder-only Transformer over characters (nanoGPT's small CPU configuration): token and learned position
/// embeddings, four pre-LayerNorm blocks of four heads with causal self-attention, a final LayerNorm, and an output
/// head that shares the token embedding's table. About 0.8M parameters; trained on tiny-shakespeare in windows of
/// 64 characters with AdamW, a per-step warm-up and cosine decay and gradient clipping, it reaches a validation loss
/// below 2.0 nats per character. Then its Linear layers (those inside the blocks included) are quantised to int8.
/// </summary>
[Model(Input = "B, T", InputType = DType.Int64)]
[Train(Loss.CrossEntropy, Optimizer.AdamW, LearningRate = 2e-3, WeightDecay = 0.1, Epochs = 2, BatchSize = 16, Seed = 1337,
       Schedule = Schedule.Cosine, WarmupEpochs = 0.1, ScheduleInterval = ScheduleInterval.Step, GradientClipNorm = 1.0,
       SequenceLength = 64, Data = "data/input.txt")]
[Quantize(QuantizeMode.DynamicInt8)]
public partial class ShakespeareGpt
{
    [Embedding(65, 128)]                      public partial Embedding Tokens { get; }
    [PositionalEmbedding(64)]                 public partial PositionalEmbedding Positions { get; }
    [TransformerBlock(Heads = 4, Repeat = 4)] public partial TransformerBlock Blocks { get; }
    [LayerNorm]                               public partial LayerNorm Norm { get; }
    [Linear(65, TiedTo = nameof(Tokens))]     public partial Linear Head { get; }

    // GPT-2's initialisation of the shared table: PyTorch's N(0, 1) for an embedding would make the tied head's first
    // logits about sqrt(128) times too large.
    partial void OnCreated()
    {
        using var noGrad = torch.no_grad();
        Tokens.weight!.normal_(0, 0.02);
    }
}
