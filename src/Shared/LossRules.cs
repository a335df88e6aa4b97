namespace ModelDsl.Shapes
{
    /// <summary>
    /// Which model outputs a loss can train on with ModelDsl's data format. A data file has one label per row, so
    /// the targets of a batch of B samples are always a vector (B): int64 class indices for CrossEntropy and NLL,
    /// float32 values for MSE and BCEWithLogits, which the trainer reshapes to the output's shape
    /// (<c>target.reshape(output.shape)</c> in <c>Trainer.ComputeLoss</c>). The rules say exactly what libtorch
    /// accepts there; the runtime tests hold them against libtorch for every loss and output shape.
    /// </summary>
    internal static class LossRules
    {
        /// <summary>The loss names, in the order of <c>ModelDsl.Loss</c>.</summary>
        public static readonly string[] Losses = { "CrossEntropy", "NLL", "MSE", "BCEWithLogits" };

        /// <summary>
        /// Why <paramref name="loss"/> cannot train a model whose output is <paramref name="output"/>, or null if it
        /// can. <paramref name="batch"/> is the model input's batch dimension (dimension 0).
        /// </summary>
        public static string? Problem(string loss, IReadOnlyList<Dim> output, Dim batch, bool outputIsInteger)
        {
            if (output.Count == 0)
                return "the output is a scalar; it needs one row per sample";
            if (outputIsInteger)
                return "the output is integer ids (the model passes its integer input through); a loss needs floating-point values";
            if (!output[0].Equals(batch))
                return $"dimension 0 of the output is {output[0]}, not the batch dimension {batch}: the data has one label per sample, " +
                       "so the output needs one row per sample (keep the batch dimension out of [Flatten], which starts at 1 by default)";

            switch (loss)
            {
                case "CrossEntropy":
                case "NLL":
                    if (output.Count == 1)
                        return "it needs class scores (B, C); the output has no class dimension";
                    if (output.Count > 2)
                        // PyTorch takes (B, C, d1, ...) only with a class index per position, targets (B, d1, ...);
                        // a data file gives one label per row, so libtorch would fail in the first step.
                        return "it needs class scores (B, C), one row of scores per label; an output with more dimensions needs a class index " +
                               "per position, which a data file with one label per row cannot give. Reduce it to (B, C) first, e.g. " +
                               "[Flatten] then [Linear(classes)], or [AdaptiveAvgPool2d(1)] then [Flatten]";
                    if (output[1].IsConcrete && output[1].Size < 2)
                        return $"it needs at least 2 classes in dimension 1, the output has {output[1].Size}";
                    return null;

                case "MSE":
                case "BCEWithLogits":
                {
                    // The target (one value per sample) is reshaped to the output's shape, which works exactly when
                    // the output holds one value per sample: (B), (B, 1), (B, 1, 1), ...
                    long perSample = 1;
                    for (int i = 1; i < output.Count; i++)
                    {
                        if (!output[i].IsConcrete) return null;
                        perSample = perSample > long.MaxValue / System.Math.Max(1, output[i].Size) ? long.MaxValue : perSample * output[i].Size;
                    }
                    if (perSample == 1) return null;
                    return loss == "BCEWithLogits"
                        ? $"it needs one logit per sample, (B) or (B, 1), with 0/1 targets; the output has {perSample} values per sample. " +
                          "For several classes use Loss.CrossEntropy with class-index targets"
                        : $"its targets are one value per sample, but the output has {perSample} values per sample; end the model with [Linear(1)]";
                }

                default:
                    return null;
            }
        }

        /// <summary>
        /// Why <paramref name="loss"/> cannot train a language model whose output is <paramref name="output"/>
        /// (B, T, V), or null if it can. Its targets come from text, a class index per position (B, T): the trainer
        /// flattens both to (B·T, V) and (B·T) (<c>LossFunctions.Compute</c>), as nanoGPT's
        /// <c>cross_entropy(logits.view(-1, V), targets.view(-1))</c>.
        /// </summary>
        public static string? PerPositionProblem(string loss, IReadOnlyList<Dim> output)
        {
            if (loss is not ("CrossEntropy" or "NLL"))
                return "a language model's targets are the next token at each position (class indices); use Loss.CrossEntropy";
            if (output.Count == 3 && output[2].IsConcrete && output[2].Size < 2)
                return $"it needs at least 2 token classes in the last dimension, the output has {output[2].Size}";
            return null;
        }
    }
}
