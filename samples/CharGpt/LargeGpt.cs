using ModelDsl;
using TorchSharp;
using TorchSharp.Modules;

namespace CharGpt;

/// <summary>
/// The large-model demo: <see cref="ShakespeareGpt"/>'s layers, wider and deeper — ten pre-LayerNorm blocks of 512
/// channels and eight heads, Ψ = 31,590,977 parameters (the tied head counted once) — trained on two ranks with ZeRO
/// stage 3 (each rank keeps the fp32 master weights, Adam's moments, the bf16 weights and the bf16 gradients of its half
/// of the parameters: 16Ψ/N), bfloat16 matrix products, each block's activations recomputed in backward, and a
/// per-rank memory budget the compiler checks against its plan (MD0430: only stage 3 fits 272 MiB).
/// <c>dotnet run -c Release -- large</c> trains it; README.md has the figures of a run.
/// </summary>
[Model(Input = "B, T", InputType = DType.Int64)]
[Train(Loss.CrossEntropy, Optimizer.AdamW, LearningRate = 6e-4, WeightDecay = 0.1, Epochs = 1, BatchSize = 4, Seed = 1337,
       Schedule = Schedule.Cosine, WarmupEpochs = 0.05, ScheduleInterval = ScheduleInterval.Step, GradientClipNorm = 1.0,
       SequenceLength = 64, Data = "data/input.txt", Precision = Precision.BFloat16, Recompute = Recompute.Blocks, MemoryBudgetMB = 272)]
[Parallel(ParallelMode.Sync, WorldSize = 2, Shard = ShardLevel.Parameters)]
public partial class LargeGpt
{
    [Embedding(65, 512)]                       public partial Embedding Tokens { get; }
    [PositionalEmbedding(64)]                  public partial PositionalEmbedding Positions { get; }
    [TransformerBlock(Heads = 8, Repeat = 10)] public partial TransformerBlock Blocks { get; }
    [LayerNorm]                                public partial LayerNorm Norm { get; }
    [Linear(65, TiedTo = nameof(Tokens))]      public partial Linear Head { get; }

    // GPT-2's initialisation of the shared table, as ShakespeareGpt's.
    partial void OnCreated()
    {
        using var noGrad = torch.no_grad();
        Tokens.weight!.normal_(0, 0.02);
    }
}
