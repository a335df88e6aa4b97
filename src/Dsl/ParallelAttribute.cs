#if MODELDSL_GENERATOR
// Compiled into the generator too (its parsers read the properties by nameof), under its own namespace: the generator
// tests reference both assemblies.
namespace ModelDsl.Generators.Dsl
#else
namespace ModelDsl
#endif
{
    /// <summary>
    /// Declares data-parallel training for a model with <see cref="TrainAttribute">[Train]</see>: the generated
    /// trainer runs <see cref="WorldSize"/> ranks (relaunching itself under <c>mpirun</c> when started alone),
    /// each on its share of every epoch. <see cref="ParallelMode.Sync"/> averages gradients every step, exactly
    /// as PyTorch's <c>DistributedDataParallel</c>. Values are checked at compile time (MD02xx). The generated plan holds
    /// only the properties a model writes; the runtime applies the default each property names to the others.
    /// </summary>
    /// <example><c>[Parallel(ParallelMode.Sync, WorldSize = 2)]</c></example>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
    public sealed class ParallelAttribute : Attribute
    {
        /// <summary>Declares the mode; everything else has PyTorch-like defaults.</summary>
        public ParallelAttribute(ParallelMode mode) { Mode = mode; }

        /// <summary>Synchronous (DDP) or asynchronous (local SGD).</summary>
        public ParallelMode Mode { get; }
        /// <summary>Ranks (processes) training together; at least 1. Default 2. <c>--world-size</c> overrides it.</summary>
        public int WorldSize { get; set; } = PlanDefaults.WorldSize;
        /// <summary>The collective library. Default <see cref="CommBackend.Auto"/>.</summary>
        public CommBackend Backend { get; set; }
        /// <summary>Gradient bucket size in MiB (the first bucket is 1 MiB, as in PyTorch); positive. Default 25.</summary>
        public double BucketSizeMB { get; set; } = PlanDefaults.BucketSizeMB;
        /// <summary>Average BatchNorm batch statistics over all ranks (PyTorch's <c>SyncBatchNorm</c>). Default off.</summary>
        public bool SyncBatchNorm { get; set; }
        /// <summary>Async only: local steps between parameter averaging rounds; at least 1. Default 1.</summary>
        public int SyncEvery { get; set; } = PlanDefaults.SyncEvery;
        /// <summary>Async only: synchronous steps before local SGD starts; 0 or more. Default 0.</summary>
        public int WarmupSteps { get; set; }
        /// <summary>Async only: the outer optimiser applied to the averaged change (DiLoCo). Default none.</summary>
        public OuterOptimizer OuterOptimizer { get; set; }
        /// <summary>Async with <see cref="OuterOptimizer.Nesterov"/>: outer learning rate; positive. Default 0.7 (DiLoCo).</summary>
        public double OuterLearningRate { get; set; } = PlanDefaults.OuterLearningRate;
        /// <summary>Async with <see cref="OuterOptimizer.Nesterov"/>: outer momentum in [0, 1). Default 0.9 (DiLoCo).</summary>
        public double OuterMomentum { get; set; } = PlanDefaults.OuterMomentum;
        /// <summary>
        /// Async only: start each round's all-reduce without waiting and apply it at the next round, so it overlaps the
        /// local steps between (default); false averages with a blocking all-reduce. <c>--no-overlap</c> turns it off.
        /// </summary>
        public bool Overlap { get; set; } = PlanDefaults.Overlap;
        /// <summary>
        /// Restarts of a failed job (a rank killed, crashed or lost), every rank from the last checkpoint, as torchrun's
        /// <c>--max-restarts</c>; 0 or more. Usage errors and divergence are never restarted. Default 0.
        /// <c>--max-restarts</c> overrides it.
        /// </summary>
        public int MaxRestarts { get; set; }
        /// <summary>
        /// Sync only: what each rank shards instead of replicating (ZeRO stages 1–3); the steps are DDP's. Default
        /// <see cref="ShardLevel.None"/>. <c>--shard</c> overrides it.
        /// </summary>
        public ShardLevel Shard { get; set; }
    }
}
