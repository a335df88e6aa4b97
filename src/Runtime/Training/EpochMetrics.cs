using System;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// What one epoch of training measured. It is kept in the checkpoint (so a resumed run continues the history)
    /// and written to the training report; the JSON names are snake_case (see docs/report.md).
    /// </summary>
    public sealed record EpochMetrics
    {
        /// <summary>The epoch, 1-based.</summary>
        [JsonPropertyName("epoch")]
        public int Epoch { get; init; }

        /// <summary>Mean training loss over the epoch's samples (as the batches saw them, in training mode).</summary>
        [JsonPropertyName("train_loss")]
        public double TrainLoss { get; init; }

        /// <summary>
        /// Fraction of training samples classified correctly, in [0, 1]; <see cref="double.NaN"/> when the loss is
        /// not a classification loss. Written as JSON <c>null</c> in that case.
        /// </summary>
        [JsonPropertyName("train_accuracy")]
        [JsonConverter(typeof(NaNAsNullConverter))]
        public double TrainAccuracy { get; init; } = double.NaN;

        /// <summary>Mean validation loss after the epoch; null when there is no validation set.</summary>
        [JsonPropertyName("val_loss")]
        public double? ValLoss { get; init; }

        /// <summary>Validation accuracy in [0, 1]; null without a validation set or for non-classification losses.</summary>
        [JsonPropertyName("val_accuracy")]
        public double? ValAccuracy { get; init; }

        /// <summary>The learning rate used during the epoch.</summary>
        [JsonPropertyName("learning_rate")]
        public double LearningRate { get; init; }

        /// <summary>Wall-clock seconds the epoch's training steps took (validation excluded).</summary>
        [JsonPropertyName("seconds")]
        public double Seconds { get; init; }

        /// <summary>Training samples processed in the epoch.</summary>
        [JsonPropertyName("samples")]
        public long Samples { get; init; }
    }

    /// <summary>Writes <see cref="double.NaN"/> as JSON null and reads null (or "NaN") back as NaN.</summary>
    internal sealed class NaNAsNullConverter : JsonConverter<double>
    {
        public override double Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            if (reader.TokenType == JsonTokenType.Null) return double.NaN;
            if (reader.TokenType == JsonTokenType.String && reader.GetString() == "NaN") return double.NaN;
            return reader.GetDouble();
        }

        public override void Write(Utf8JsonWriter writer, double value, JsonSerializerOptions options)
        {
            if (double.IsNaN(value)) writer.WriteNullValue();
            else writer.WriteNumberValue(value);
        }
    }
}
