using System.Text.Json.Serialization;

namespace ModelDsl.Runtime.Optimization
{
    /// <summary>The report section <c>optimized</c>: what the passes did and what they gained (docs/report.md).</summary>
    public sealed class OptimizationReport
    {
        /// <summary>The passes that ran, in order, as text.</summary>
        [JsonPropertyName("passes")] public List<string> Passes { get; set; } = new();
        /// <summary>Fraction of zero weights per pruned layer, after the passes that prune it.</summary>
        [JsonPropertyName("layer_sparsity")] public Dictionary<string, double> LayerSparsity { get; set; } = new();
        /// <summary>Fraction of zero parameter elements in the whole model.</summary>
        [JsonPropertyName("sparsity")] public double Sparsity { get; set; }
        /// <summary>Parameter elements before and after (structured pruning removes some).</summary>
        [JsonPropertyName("param_count_before")] public long ParamCountBefore { get; set; }
        /// <summary>Parameter elements after the passes (int8 weights and biases of quantised layers included).</summary>
        [JsonPropertyName("param_count_after")] public long ParamCountAfter { get; set; }
        /// <summary>What the compiler computed the count after the passes would be (the generated plan's <c>ParametersAfterPasses</c>).</summary>
        [JsonPropertyName("param_count_after_compile_time")] public long ParamCountAfterCompileTime { get; set; }
        /// <summary>Bytes of the state dict's tensors before the passes.</summary>
        [JsonPropertyName("param_bytes_before")] public long ParamBytesBefore { get; set; }
        /// <summary>Bytes of the state dict's tensors after (int8 weights take a quarter of float32's).</summary>
        [JsonPropertyName("param_bytes_after")] public long ParamBytesAfter { get; set; }
        /// <summary>Size of the saved fp32 model file.</summary>
        [JsonPropertyName("file_bytes_before")] public long FileBytesBefore { get; set; }
        /// <summary>Size of the saved optimised model file.</summary>
        [JsonPropertyName("file_bytes_after")] public long FileBytesAfter { get; set; }
        /// <summary><c>file_bytes_after / file_bytes_before</c>.</summary>
        [JsonPropertyName("size_ratio")] public double SizeRatio { get; set; }
        /// <summary>Where the optimised model was written.</summary>
        [JsonPropertyName("export_path")] public string ExportPath { get; set; } = "";
        /// <summary>Test accuracy before the passes (the trained model); null without test data.</summary>
        [JsonPropertyName("test_accuracy_before")] public double? TestAccuracyBefore { get; set; }
        /// <summary>Test accuracy of the optimised model; null without test data.</summary>
        [JsonPropertyName("test_accuracy")] public double? TestAccuracy { get; set; }
        /// <summary>Validation loss of the optimised model; null without a validation set.</summary>
        [JsonPropertyName("val_loss")] public double? ValLoss { get; set; }
        /// <summary>Median milliseconds of one forward at batch 1, before and after.</summary>
        [JsonPropertyName("latency_ms_batch1_before")] public double LatencyBatch1Before { get; set; }
        /// <summary>Median milliseconds of one forward at batch 1 after the passes.</summary>
        [JsonPropertyName("latency_ms_batch1_after")] public double LatencyBatch1After { get; set; }
        /// <summary>Median milliseconds of one forward at batch 64 before the passes.</summary>
        [JsonPropertyName("latency_ms_batch64_before")] public double LatencyBatch64Before { get; set; }
        /// <summary>Median milliseconds of one forward at batch 64 after the passes.</summary>
        [JsonPropertyName("latency_ms_batch64_after")] public double LatencyBatch64After { get; set; }
        /// <summary>A language model's sampling speed before the passes (<c>generate</c>, one sequence), tokens per second; null for other models.</summary>
        [JsonPropertyName("generation_tokens_per_second_before")] public double? GenerationTokensPerSecondBefore { get; set; }
        /// <summary>A language model's sampling speed after the passes, tokens per second; null for other models.</summary>
        [JsonPropertyName("generation_tokens_per_second_after")] public double? GenerationTokensPerSecondAfter { get; set; }
        /// <summary>Batch-64 latency before / after.</summary>
        [JsonPropertyName("speedup")] public double Speedup { get; set; }
        /// <summary>Batch-1 latency before / after.</summary>
        [JsonPropertyName("speedup_batch1")] public double SpeedupBatch1 { get; set; }
        /// <summary>The latency after each pass that changes the model's compute (structured cuts, quantisation), against the model before that pass.</summary>
        [JsonPropertyName("pass_latencies")] public List<PassLatency> PassLatencies { get; set; } = new();
        /// <summary>The BatchNorm layers folded into the Conv2d or Linear before them (their slots hold a FoldedBatchNorm).</summary>
        [JsonPropertyName("folded_batch_norms")] public List<string> FoldedBatchNorms { get; set; } = new();
        /// <summary>Warnings, one line each: a declared pass that made the model slower.</summary>
        [JsonPropertyName("warnings")] public List<string> Warnings { get; set; } = new();
        /// <summary>Per pruning pass with fine-tuning: the fine-tune epochs' metrics.</summary>
        [JsonPropertyName("fine_tune_epochs")] public int FineTuneEpochs { get; set; }
    }

    /// <summary>One measured pass of the plan: the latency after it, and its speed-up over the model before it.</summary>
    public sealed class PassLatency
    {
        /// <summary>The pass, as text.</summary>
        [JsonPropertyName("pass")] public string Pass { get; set; } = "";
        /// <summary>Milliseconds of the fastest of 50 forwards at batch 1 right after the pass.</summary>
        [JsonPropertyName("latency_ms_batch1")] public double LatencyBatch1 { get; set; }
        /// <summary>Milliseconds of the fastest of 20 forwards at batch 64 right after the pass.</summary>
        [JsonPropertyName("latency_ms_batch64")] public double LatencyBatch64 { get; set; }
        /// <summary>Batch-1 latency before the pass / after it.</summary>
        [JsonPropertyName("speedup_batch1")] public double SpeedupBatch1 { get; set; }
        /// <summary>Batch-64 latency before the pass / after it.</summary>
        [JsonPropertyName("speedup_batch64")] public double SpeedupBatch64 { get; set; }
    }
}
