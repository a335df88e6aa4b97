using System;
using System.Collections.Generic;
using System.Text.Json.Serialization;
using TorchSharp.Modules;

namespace ModelDsl.Runtime.Training
{
    /// <summary>The JSON block of a checkpoint file (docs/report.md lists its fields).</summary>
    internal sealed class CheckpointMetadata
    {
        [JsonPropertyName("model_name")] public string ModelName { get; set; } = "";
        [JsonPropertyName("plan_fingerprint")] public string PlanFingerprint { get; set; } = "";
        [JsonPropertyName("epoch")] public int Epoch { get; set; }
        [JsonPropertyName("step")] public long Step { get; set; }
        [JsonPropertyName("seed")] public long Seed { get; set; }
        /// <summary>Base64 in the JSON.</summary>
        [JsonPropertyName("rng_state")] public byte[] RngState { get; set; } = Array.Empty<byte>();
        [JsonPropertyName("history")] public List<EpochMetrics> History { get; set; } = new();
        /// <summary>The optimiser's type name (SGD, Adam, AdamW).</summary>
        [JsonPropertyName("optimizer")] public string Optimizer { get; set; } = "";
        /// <summary>The model's state dictionary, in the order <c>Module.save</c> writes it.</summary>
        [JsonPropertyName("tensors")] public List<CheckpointTensor> Tensors { get; set; } = new();
        [JsonPropertyName("written_utc")] public DateTime WrittenUtc { get; set; }
        /// <summary>The strategy's own state (base64 values); absent when it keeps none.</summary>
        [JsonPropertyName("strategy_state"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
        public Dictionary<string, byte[]>? StrategyState { get; set; }

        public static CheckpointMetadata From(CheckpointState state, OptimizerHelper optimizer, List<CheckpointTensor> tensors) => new()
        {
            ModelName = state.ModelName ?? "",
            PlanFingerprint = state.PlanFingerprint ?? "",
            Epoch = state.Epoch,
            Step = state.Step,
            Seed = state.Seed,
            RngState = state.RngState ?? Array.Empty<byte>(),
            History = state.History is null ? new() : new(state.History),
            Optimizer = optimizer.GetType().Name,
            Tensors = tensors,
            WrittenUtc = DateTime.UtcNow,
            StrategyState = state.StrategyState,
        };

        public CheckpointState ToState() => new()
        {
            ModelName = ModelName,
            PlanFingerprint = PlanFingerprint,
            Epoch = Epoch,
            Step = Step,
            Seed = Seed,
            RngState = RngState,
            History = History,
            StrategyState = StrategyState,
        };
    }

    /// <summary>One entry of the model's state dictionary as the checkpoint records it.</summary>
    internal sealed class CheckpointTensor
    {
        [JsonPropertyName("name")] public string Name { get; set; } = "";
        /// <summary>"parameter" or "buffer".</summary>
        [JsonPropertyName("kind")] public string Kind { get; set; } = "";
        [JsonPropertyName("shape")] public long[] Shape { get; set; } = Array.Empty<long>();
        /// <summary>The TorchSharp ScalarType name, e.g. Float32.</summary>
        [JsonPropertyName("dtype")] public string DType { get; set; } = "";
    }
}
