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
                return Compute(loss, output.flatten(0, 1), target.flatten());
            return ComputeRows(loss, output, target);
        }

        private static Tensor ComputeRows(Loss loss, Tensor output, Tensor target) => loss switch
        {
            Loss.CrossEntropy => nn.functional.cross_entropy(output, target),
            Loss.NLL => nn.functional.nll_loss(output, target),
            Loss.MSE => nn.functional.mse_loss(output, target.reshape(output.shape)),
            _ => nn.functional.binary_cross_entropy_with_logits(output, target.reshape(output.shape)),
        };

        /// <summary>Whether the loss has an accuracy: classification, or binary with a 0.5 threshold on the probability.</summary>
        public static bool HasAccuracy(Loss loss) => loss is Loss.CrossEntropy or Loss.NLL or Loss.BCEWithLogits;

        /// <summary>How many predictions of the batch were right (one per target: per position for a language model); 0 for losses without accuracy.</summary>
        /// <remarks>No dispose scope of its own: every caller runs inside a per-batch scope, and a nested one per step costs time.</remarks>
        public static long CountCorrect(Loss loss, Tensor output, Tensor target) => loss switch
        {
            // Per position for a language model: argmax over the vocabulary (the last dimension).
            Loss.CrossEntropy or Loss.NLL => output.argmax(output.dim() == 3 && target.dim() == 2 ? 2 : 1).eq(target).sum().item<long>(),
            Loss.BCEWithLogits => output.reshape(target.shape).gt(0).eq(target.gt(0.5)).sum().item<long>(),
            _ => 0,
        };
    }
}
