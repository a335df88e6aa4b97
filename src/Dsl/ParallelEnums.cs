#if MODELDSL_GENERATOR
// Compiled into the generator too (its parsers read the properties by nameof), under its own namespace: the generator
// tests reference both assemblies.
namespace ModelDsl.Generators.Dsl
#else
namespace ModelDsl
#endif
{
    /// <summary>How ranks of a data-parallel run keep their replicas together.</summary>
    public enum ParallelMode
    {
        /// <summary>
        /// Synchronous data parallel with PyTorch <c>DistributedDataParallel</c> semantics: gradients are averaged
        /// over all ranks after every backward pass, so every rank takes the same optimiser step.
        /// </summary>
        Sync = 0,
        /// <summary>
        /// Asynchronous (local SGD / DiLoCo): each rank takes local steps and the replicas are averaged every
        /// <c>SyncEvery</c> steps.
        /// </summary>
        Async = 1,
    }

    /// <summary>The collective library ranks talk through.</summary>
    public enum CommBackend
    {
        /// <summary>NCCL for CUDA devices, Open MPI otherwise.</summary>
        Auto = 0,
        /// <summary>Open MPI (CPU tensors; across machines with a hostfile).</summary>
        Mpi = 1,
        /// <summary>NCCL (CUDA tensors only); the communicator's unique id travels over MPI.</summary>
        Nccl = 2,
    }

    /// <summary>The optimiser applied to the averaged outer gradient in asynchronous (DiLoCo-style) training.</summary>
    public enum OuterOptimizer
    {
        /// <summary>Plain model averaging (local SGD): the replicas are replaced by their mean.</summary>
        None = 0,
        /// <summary>Nesterov-momentum SGD on the outer gradient, as in DiLoCo (Douillard et al. 2023).</summary>
        Nesterov = 1,
    }
    /// <summary>
    /// What synchronous data parallel shards across ranks instead of replicating (ZeRO, Rajbhandari et al. 2020; see
    /// docs/distributed.md). Each level keeps the previous one's sharding. In fp32 every level takes DDP's steps.
    /// </summary>
    public enum ShardLevel
    {
        /// <summary>Nothing: every rank holds the whole model state (DDP).</summary>
        None = 0,
        /// <summary>ZeRO stage 1: each rank keeps and steps the optimiser state of its partition of the parameters only (PyTorch's <c>ZeroRedundancyOptimizer</c>).</summary>
        OptimizerState = 1,
        /// <summary>ZeRO stage 2: also the gradients, reduce-scattered so that each rank keeps only its partition's.</summary>
        Gradients = 2,
        /// <summary>ZeRO stage 3 (FSDP's FULL_SHARD): also the parameters, each top-level layer's gathered before its forward and freed after the step's gradient reduce-scatter; float32 only.</summary>
        Parameters = 3,
    }
}
