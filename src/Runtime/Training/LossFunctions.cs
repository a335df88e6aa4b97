using static TorchSharp.torch;

namespace ModelDsl.Runtime.Training
{
    /// <summary>The declared loss as libtorch computes it, and the accuracy count that goes with it.</summary>
    public static class LossFunctions
    {
        /// <summary>
        /// The mean loss of a batch. Targets hold one value per row: class indices for cross-entropy and NLL, one
        /// float for MSE and BCE-with-logits (reshaped to the output, which the compiler checked holds one value
        /// per sample); or, for a language model's scores (B, T, V), a class index per position (B, T), the mean
        /// over all B·T positions.
        /// </summary>
        public static Tensor Compute(Loss loss, Tensor output, Tensor target)
        {
            // A language model: scores (B, T, V) against a class index per position (B, T), flattened as nanoGPT does.
            if (output.dim() == 3 && target.dim() == 2 && loss is Loss.CrossEntropy or Loss.NLL)
            {
                // Held in using variables, not passed as bare temporaries: see README.md, "Tensor temporaries".
                using var rows = output.flatten(0, 1);
                using var rowTargets = target.flatten();
                return ComputeRows(loss, rows, rowTargets);
            }
            return ComputeRows(loss, output, target);
        }

        /// <summary>
        /// The plan's loss of a batch: its <see cref="TrainingPlan.CustomLoss"/> (the model's [Loss] method) when it has
        /// one, called with the model's output and the targets as loaded, otherwise the declared loss.
        /// </summary>
        public static Tensor Compute(TrainingPlan plan, Tensor output, Tensor target) =>
            plan.CustomLoss is { } custom ? Custom(plan, custom, output, target) : Compute(plan.Loss, output, target);

        private static Tensor Custom(TrainingPlan plan, System.Func<Tensor, Tensor, Tensor> custom, Tensor output, Tensor target)
        {
            var loss = custom(output, target)
                ?? throw new TrainingException($"the [Loss] method {plan.LossMethod} returned null; it must return the batch's loss as a scalar tensor");
            if (loss.numel() != 1)
                throw new TrainingException($"the [Loss] method {plan.LossMethod} returned a tensor of shape [{string.Join(", ", loss.shape)}]; " +
                                            "it must return the batch's loss as a scalar (reduce it, e.g. with .mean())");
            // The trainer reads the loss as float32 (as the built-in losses are); a float64 loss is converted, not an error.
            if (loss.dtype == ScalarType.Float32) return loss;
            var converted = loss.to_type(ScalarType.Float32);
            GC.KeepAlive(loss); // the method's tensor, not ours to dispose; alive until the conversion has read it
            return converted;
        }

        private static Tensor ComputeRows(Loss loss, Tensor output, Tensor target)
        {
            if (loss == Loss.CrossEntropy) return nn.functional.cross_entropy(output, target);
            if (loss == Loss.NLL) return nn.functional.nll_loss(output, target);
            using var shaped = target.reshape(output.shape);
            return loss == Loss.MSE
                ? nn.functional.mse_loss(output, shaped)
                : nn.functional.binary_cross_entropy_with_logits(output, shaped);
        }

        /// <summary>Whether the loss has an accuracy: classification, or binary with a 0.5 threshold on the probability.</summary>
        public static bool HasAccuracy(Loss loss) => loss is Loss.CrossEntropy or Loss.NLL or Loss.BCEWithLogits;

        /// <summary>How many predictions of the batch were right (one per target: per position for a language model); 0 for losses without accuracy.</summary>
        /// <remarks>
        /// No dispose scope of its own (a nested one per step costs time): the temporaries are using variables, disposed
        /// once read, so it is safe with or without the caller's per-batch scope.
        /// </remarks>
        public static long CountCorrect(Loss loss, Tensor output, Tensor target)
        {
            switch (loss)
            {
                case Loss.CrossEntropy or Loss.NLL:
                {
                    // Per position for a language model: argmax over the vocabulary (the last dimension).
                    using var predicted = output.argmax(output.dim() == 3 && target.dim() == 2 ? 2 : 1);
                    using var right = predicted.eq(target);
                    using var count = right.sum();
                    return count.item<long>();
                }
                case Loss.BCEWithLogits:
                {
                    using var logits = output.reshape(target.shape);
                    using var predicted = logits.gt(0);
                    using var actual = target.gt(0.5);
                    using var right = predicted.eq(actual);
                    using var count = right.sum();
                    return count.item<long>();
                }
                default:
                    return 0;
            }
        }
    }
}
