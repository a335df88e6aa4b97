using System;
using System.Collections.Generic;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// Everything a checkpoint holds besides the weights and the optimiser state: where training stood, and what
    /// it must agree with to be resumed.
    /// </summary>
    public sealed class CheckpointState
    {
        /// <summary>The model class the weights belong to; loading into another model name is an error.</summary>
        public string ModelName { get; set; } = "";

        /// <summary>
        /// The trainer's fingerprint of the training plan (<see cref="TrainingPlan.Fingerprint"/>); resuming with a
        /// different one is an error. When it is a JSON object, the error lists the keys that differ.
        /// </summary>
        public string PlanFingerprint { get; set; } = "";

        /// <summary>Completed epochs: a resumed run starts at this 0-based epoch.</summary>
        public int Epoch { get; set; }

        /// <summary>Optimiser steps taken so far.</summary>
        public long Step { get; set; }

        /// <summary>The CPU generator's state (<c>torch.get_rng_state()</c> as bytes) when the checkpoint was taken.</summary>
        public byte[] RngState { get; set; } = Array.Empty<byte>();

        /// <summary>The metrics of every completed epoch, oldest first.</summary>
        public List<EpochMetrics> History { get; set; } = new();

        /// <summary>The run's seed.</summary>
        public long Seed { get; set; }

        /// <summary>
        /// What the training strategy carries from epoch to epoch besides the weights, by name (local SGD's outer
        /// momentum); null when it carries nothing.
        /// </summary>
        public Dictionary<string, byte[]>? StrategyState { get; set; }
    }
}
