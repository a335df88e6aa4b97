namespace ModelDsl
{
    /// <summary>How the ranks of a data-parallel run combine their work.</summary>
    public enum ParallelMode
    {
        /// <summary>Synchronous data parallel with PyTorch DDP semantics: gradients averaged every step.</summary>
        Sync = 0,
        /// <summary>Asynchronous: local SGD, parameters averaged every <c>SyncEvery</c> steps.</summary>
        Async = 1,
    }

    /// <summary>The collective library that carries the ranks' traffic.</summary>
    public enum CommBackend
    {
        /// <summary>NCCL for CUDA devices, Open MPI otherwise.</summary>
        Auto = 0,
        /// <summary>Open MPI (CPU tensors; across machines).</summary>
        Mpi = 1,
        /// <summary>NCCL (CUDA tensors only).</summary>
        Nccl = 2,
    }

    /// <summary>The outer optimiser of asynchronous training (DiLoCo).</summary>
    public enum OuterOptimizer
    {
        /// <summary>Plain parameter averaging.</summary>
        None = 0,
        /// <summary>Nesterov momentum SGD on the averaged parameter change (DiLoCo).</summary>
        Nesterov = 1,
    }
}
