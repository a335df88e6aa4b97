using System;
using System.Collections.Generic;
using ModelDsl.Runtime.Data;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// How the processes of one training run work together: the trainer's one seam for data parallel and local
    /// SGD. The loop calls these members at fixed points and never asks which strategy it runs; a single process
    /// (<see cref="SingleProcessStrategy"/>) implements each as a no-op or the identity.
    /// </summary>
    /// <remarks>
    /// Every member that communicates is a collective: all ranks call it, in the same order, the same number of
    /// times. The loop keeps that true by taking every decision that ends work (a diverged loss, early stopping, the
    /// end of training) from a value the strategy agreed across ranks, never from one rank's local state. Only a
    /// strategy whose ranks step independently (local SGD) lets a rank skip its own non-finite step between rounds.
    /// </remarks>
    public interface ITrainingStrategy : IDisposable
    {
        /// <summary>This process's rank, 0-based. Rank 0 alone prints and writes files.</summary>
        int Rank { get; }

        /// <summary>The number of processes training together.</summary>
        int WorldSize { get; }

        /// <summary>
        /// After the model is built (and restored on resume): makes every rank start from rank 0's state.
        /// <paramref name="stepsTaken"/>: optimiser steps already taken (a resumed run's; 0 for a fresh model).
        /// </summary>
        void Start(nn.Module model, long stepsTaken);

        /// <summary>
        /// <see cref="Start(nn.Module, long)"/> with the optimiser the loop steps, for a strategy that manages its state
        /// (sharding keeps only its partition's). The trainer calls this one; by default it is the other.
        /// </summary>
        void Start(nn.Module model, long stepsTaken, TorchSharp.Modules.OptimizerHelper optimizer) => Start(model, stepsTaken);

        /// <summary>
        /// Before <see cref="Start(nn.Module, long, TorchSharp.Modules.OptimizerHelper)"/>: the arithmetic the steps run
        /// in, for a strategy that manages a mixed-precision working copy itself (ZeRO stage 3 in bf16). By default ignored.
        /// </summary>
        void UsePrecision(MixedPrecision.ITrainingPrecision precision) { }

        /// <summary>The number of batches <see cref="Batches"/> yields on this rank each epoch.</summary>
        long BatchCount(TensorDataset data, int batchSize);

        /// <summary>This rank's training batches of one epoch, shuffled with <c>seed + epoch</c>.</summary>
        IEnumerable<(Tensor X, Tensor Y)> Batches(TensorDataset data, int batchSize, long seed, int epoch);

        /// <summary>
        /// Whether this step's update is applied, given whether this rank's loss was finite. DDP agrees across ranks (a
        /// NaN on any rank skips the step on every rank); local SGD decides per rank and agrees at its next round.
        /// </summary>
        bool AllFinite(bool finite);

        /// <summary>After backward, before clipping: makes the gradients what the optimiser should apply (DDP averages them).</summary>
        void SynchronizeGradients(nn.Module model);

        /// <summary>
        /// Whether the strategy agrees on finiteness in the same collective as the gradients
        /// (<see cref="SynchronizeGradients(nn.Module, bool)"/>, DDP): then the step runs backward first and does not call
        /// <see cref="AllFinite"/>. False by default: the vote comes before backward, so no rank runs a backward pass
        /// (with its collectives, under ZeRO stage 3) that another rank skips.
        /// </summary>
        bool VotesWithGradients => false;

        /// <summary>
        /// After backward, when <see cref="VotesWithGradients"/>: agrees on whether every rank's loss was finite and
        /// synchronises the gradients, in one collective; returns whether the update applies (the gradients are not
        /// meaningful when it does not). By default the two calls, one after the other.
        /// </summary>
        bool SynchronizeGradients(nn.Module model, bool finite)
        {
            if (!AllFinite(finite)) return false;
            SynchronizeGradients(model);
            return true;
        }

        /// <summary>
        /// Whether <see cref="SynchronizeGradients(nn.Module)"/> also clips them to the plan's norm (sharding clips by the norm
        /// over every rank's partition, which the step cannot see); then the step does not clip again.
        /// </summary>
        bool ClipsGradients => false;

        /// <summary>
        /// After step <paramref name="step"/> (1-based, counted over the whole run), whose loss was <paramref name="loss"/>
        /// and whose update was <paramref name="applied"/> or skipped; local SGD averages here. Returns the divergence
        /// that stops training, the same on every rank — at once under DDP, at the next round under local SGD — or
        /// null to go on.
        /// </summary>
        Divergence? AfterStep(nn.Module model, long step, double loss, bool applied);

        /// <summary>
        /// After an epoch's last step, before validation and the checkpoint: makes every rank hold the same model
        /// (local SGD closes its open averaging round here; DDP's replicas are identical already). Returns a
        /// divergence the ranks agree on here, or null.
        /// </summary>
        Divergence? EndEpoch(nn.Module model);

        /// <summary>Sums each value over all ranks, in place (epoch metrics).</summary>
        void SumAcrossRanks(double[] values);

        /// <summary>What the checkpoint must keep for an exact resume besides the weights (null: nothing).</summary>
        Dictionary<string, byte[]>? SaveState();

        /// <summary>After <see cref="Start(nn.Module, long)"/> on resume: takes back what <see cref="SaveState"/> gave (null when the checkpoint has none).</summary>
        void RestoreState(IReadOnlyDictionary<string, byte[]>? state);

        /// <summary>At the end of training: adds the strategy's own figures to the report (rank 0's copy is written).</summary>
        void Finish(nn.Module model, TrainingReport report);
    }

    /// <summary>A non-finite loss that stops training: its value (as the rank that first met it saw it) and step.</summary>
    public readonly record struct Divergence(double Loss, long Step);

    /// <summary>One process trains alone: nothing to synchronise.</summary>
    public sealed class SingleProcessStrategy : ITrainingStrategy
    {
        /// <inheritdoc/>
        public int Rank => 0;
        /// <inheritdoc/>
        public int WorldSize => 1;
        /// <inheritdoc/>
        public void Start(nn.Module model, long stepsTaken) { }
        /// <inheritdoc/>
        public long BatchCount(TensorDataset data, int batchSize) => data.BatchCount(batchSize);
        /// <inheritdoc/>
        public IEnumerable<(Tensor X, Tensor Y)> Batches(TensorDataset data, int batchSize, long seed, int epoch) =>
            data.Batches(batchSize, shuffle: true, seed, epoch);
        /// <inheritdoc/>
        public bool AllFinite(bool finite) => finite;
        /// <inheritdoc/>
        public void SynchronizeGradients(nn.Module model) { }
        /// <inheritdoc/>
        public Divergence? AfterStep(nn.Module model, long step, double loss, bool applied) => applied ? null : new Divergence(loss, step);
        /// <inheritdoc/>
        public Divergence? EndEpoch(nn.Module model) => null;
        /// <inheritdoc/>
        public void SumAcrossRanks(double[] values) { }
        /// <inheritdoc/>
        public Dictionary<string, byte[]>? SaveState() => null;
        /// <inheritdoc/>
        public void RestoreState(IReadOnlyDictionary<string, byte[]>? state) { }
        /// <inheritdoc/>
        public void Finish(nn.Module model, TrainingReport report) { }
        /// <inheritdoc/>
        public void Dispose() { }
    }
}
