using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using System.Text.Json.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// The machine-readable summary of a training run, written as indented JSON with snake_case names. The schema
    /// (every field, its unit, and when it is null) is in docs/report.md. Later stages add their own top-level
    /// sections through <see cref="Sections"/>; readers keep sections they do not know.
    /// </summary>
    public sealed class TrainingReport
    {
        /// <summary>The schema version this runtime writes.</summary>
        public const int CurrentSchemaVersion = 1;

        /// <summary>The report schema version; bumped only for incompatible changes (new sections and fields are compatible).</summary>
        [JsonPropertyName("schema_version")]
        public int SchemaVersion { get; set; } = CurrentSchemaVersion;

        /// <summary>The model class name.</summary>
        [JsonPropertyName("model")]
        public string Model { get; set; } = "";

        /// <summary>Processes that trained together; 1 for single-process training.</summary>
        [JsonPropertyName("world_size")]
        public int WorldSize { get; set; } = 1;

        /// <summary>Samples per optimiser step over all processes (per-process batch size × world size).</summary>
        [JsonPropertyName("global_batch_size")]
        public int GlobalBatchSize { get; set; }

        /// <summary>The planned number of epochs (the run's total, including epochs done before a resume).</summary>
        [JsonPropertyName("epochs")]
        public int Epochs { get; set; }

        /// <summary>Optimiser steps taken in total, including those before a resume.</summary>
        [JsonPropertyName("steps")]
        public long Steps { get; set; }

        /// <summary>Wall-clock seconds of this process's training loop (after a resume: since the resume).</summary>
        [JsonPropertyName("train_seconds")]
        public double TrainSeconds { get; set; }

        /// <summary>Training samples per second over <see cref="TrainSeconds"/>.</summary>
        [JsonPropertyName("samples_per_second")]
        public double SamplesPerSecond { get; set; }

        /// <summary>A language model's training tokens (positions) per second, samples/s × T; null for other models.</summary>
        [JsonPropertyName("tokens_per_second")]
        public double? TokensPerSecond { get; set; }

        /// <summary>The last epoch's mean training loss; NaN (written "NaN") when no epoch completed.</summary>
        [JsonPropertyName("final_train_loss")]
        public double FinalTrainLoss { get; set; } = double.NaN;

        /// <summary>The last epoch's validation loss; null without a validation set.</summary>
        [JsonPropertyName("val_loss")]
        public double? ValLoss { get; set; }

        /// <summary>Accuracy on the test set in [0, 1]; null without test data or for non-classification losses.</summary>
        [JsonPropertyName("test_accuracy")]
        public double? TestAccuracy { get; set; }

        /// <summary>Number of trainable and frozen parameters (elements), buffers excluded.</summary>
        [JsonPropertyName("param_count")]
        public long ParamCount { get; set; }

        /// <summary>The L2 norm of all parameters after training (<see cref="ParameterL2"/>): a cheap fingerprint of the weights.</summary>
        [JsonPropertyName("param_l2")]
        public double ParamL2 { get; set; }

        /// <summary>The value of <see cref="StopReason"/> when every planned epoch ran.</summary>
        public const string Completed = "completed";
        /// <summary>The value of <see cref="StopReason"/> when early stopping ended training.</summary>
        public const string StoppedEarly = "early_stopping";

        /// <summary>The epoch (1-based) with the lowest validation loss, whose weights are in <c>best.ckpt</c>; null without a validation set.</summary>
        [JsonPropertyName("best_epoch")]
        public int? BestEpoch { get; set; }

        /// <summary>The validation loss of <see cref="BestEpoch"/>; null without a validation set.</summary>
        [JsonPropertyName("best_val_loss")]
        public double? BestValLoss { get; set; }

        /// <summary>Why training ended: <c>"completed"</c> (every planned epoch ran) or <c>"early_stopping"</c>.</summary>
        [JsonPropertyName("stop_reason")]
        public string StopReason { get; set; } = Completed;

        /// <summary>
        /// How many times the job was restarted from its last checkpoint after a rank failed (<c>--max-restarts</c>);
        /// 0 for a run that never failed.
        /// </summary>
        [JsonPropertyName("restarts")]
        public int Restarts { get; set; }

        /// <summary>
        /// The arithmetic the training steps ran in: <c>"fp32"</c>, or <c>"bf16"</c> (mixed precision). A run that asked for
        /// bf16 on a CPU without AVX-512 BF16 or AMX says <c>"fp32"</c> (it fell back, with a warning).
        /// </summary>
        [JsonPropertyName("precision")]
        public string Precision { get; set; } = "fp32";

        /// <summary>Per-epoch metrics, oldest first.</summary>
        [JsonPropertyName("history")]
        public List<EpochMetrics> History { get; set; } = new();

        /// <summary>
        /// Further top-level sections (for example <c>"distributed"</c> or <c>"optimization"</c>), written beside the
        /// fields above and kept when a report is read. Use <see cref="SetSection{T}"/> and <see cref="GetSection{T}"/>.
        /// </summary>
        [JsonExtensionData]
        public Dictionary<string, JsonElement> Sections { get; set; } = new(StringComparer.Ordinal);

        private static readonly HashSet<string> FieldNames = new(
            typeof(TrainingReport).GetProperties()
                .Select(p => p.GetCustomAttributes(typeof(JsonPropertyNameAttribute), false).OfType<JsonPropertyNameAttribute>().FirstOrDefault()?.Name)
                .OfType<string>(),
            StringComparer.Ordinal);

        /// <summary>
        /// Adds or replaces the top-level section <paramref name="name"/> (snake_case by convention), serialized with
        /// System.Text.Json. The names of the fixed fields are reserved.
        /// </summary>
        public void SetSection<T>(string name, T value)
        {
            ArgumentException.ThrowIfNullOrEmpty(name);
            if (FieldNames.Contains(name))
                throw new ArgumentException($"'{name}' is a field of the report, not a section name", nameof(name));
            Sections[name] = JsonSerializer.SerializeToElement(value, TrainingJson.Indented);
        }

        /// <summary>The section <paramref name="name"/> deserialized as <typeparamref name="T"/>, or default when absent.</summary>
        public T? GetSection<T>(string name)
        {
            ArgumentException.ThrowIfNullOrEmpty(name);
            return Sections.TryGetValue(name, out var element) && element.ValueKind != JsonValueKind.Null
                ? element.Deserialize<T>(TrainingJson.Indented)
                : default;
        }

        /// <summary>Writes the report to <paramref name="path"/> as indented JSON, atomically (temporary file and rename).</summary>
        public void Write(string path)
        {
            ArgumentException.ThrowIfNullOrEmpty(path);
            byte[] json = JsonSerializer.SerializeToUtf8Bytes(this, TrainingJson.Indented);
            AtomicFile.Write(path, stream =>
            {
                stream.Write(json);
                stream.WriteByte((byte)'\n');
            });
        }

        /// <summary>Reads a report written by <see cref="Write"/>; throws <see cref="InvalidDataException"/> naming the file if it is not one.</summary>
        public static TrainingReport Read(string path)
        {
            ArgumentException.ThrowIfNullOrEmpty(path);
            byte[] json = File.ReadAllBytes(path);
            try
            {
                return JsonSerializer.Deserialize<TrainingReport>(json, TrainingJson.Indented)
                       ?? throw new InvalidDataException($"{path} is not a training report (it holds null)");
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{path} is not a valid training report: {e.Message}", e);
            }
        }

        /// <summary>The L2 norm of all of <paramref name="model"/>'s parameters, sqrt(Σ p²), accumulated in float64.</summary>
        public static double ParameterL2(nn.Module model)
        {
            ArgumentNullException.ThrowIfNull(model);
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            double sum = 0;
            foreach (var p in model.parameters())
                sum += p.detach().to(ScalarType.Float64).square().sum().cpu().item<double>();
            return Math.Sqrt(sum);
        }

        /// <summary>The number of parameter elements of <paramref name="model"/> (buffers excluded).</summary>
        public static long ParameterCount(nn.Module model)
        {
            ArgumentNullException.ThrowIfNull(model);
            return model.parameters().Sum(p => p.numel());
        }
    }

    /// <summary>The serializer settings of reports and checkpoint metadata.</summary>
    internal static class TrainingJson
    {
        /// <summary>Indented, for reports people read. NaN and ±Infinity are written as the strings "NaN", "Infinity", "-Infinity".</summary>
        public static readonly JsonSerializerOptions Indented = new()
        {
            WriteIndented = true,
            NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        };

        /// <summary>Compact, for the metadata block of checkpoints.</summary>
        public static readonly JsonSerializerOptions Compact = new()
        {
            WriteIndented = false,
            NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        };
    }
}
