namespace ModelDsl
{
    /// <summary>
    /// Marks the static method of a <see cref="TrainAttribute">[Train]</see> model that computes its training loss,
    /// in place of the formula of the declared <see cref="Loss"/>: <c>static Tensor Name(Tensor output, Tensor target)</c>
    /// (TorchSharp's <c>torch.Tensor</c>), returning the batch's mean loss as a scalar that backward can run through.
    /// The generated trainer uses it for every step, for the validation loss (and so best.ckpt and early stopping) and
    /// for <c>evaluate</c>. The loss declared in <c>[Train]</c> still says what the targets are (class indices for
    /// <c>CrossEntropy</c> and <c>NLL</c>, floats for <c>MSE</c> and <c>BCEWithLogits</c>), whether accuracy is
    /// reported, and what <c>predict</c> prints. One per model; the signature is checked at compile time (MD0414–MD0416).
    /// </summary>
    /// <example>
    /// <code>
    /// [Loss]
    /// static Tensor SmoothedLoss(Tensor output, Tensor target) =&gt;
    ///     torch.nn.functional.cross_entropy(output, target, label_smoothing: 0.1);
    /// </code>
    /// </example>
    [AttributeUsage(AttributeTargets.Method, AllowMultiple = false, Inherited = false)]
    public sealed class LossAttribute : Attribute
    {
    }
}
