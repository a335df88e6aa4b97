using System;
namespace ModelDsl.Runtime.Distributed;

/// <summary>How <see cref="ProcessGroup.AllReduce"/> combines the ranks' tensors, after <c>torch.distributed.ReduceOp</c>.</summary>
public enum ReduceOp
{
    /// <summary>Element-wise sum.</summary>
    Sum = 0,
    /// <summary>
    /// Element-wise mean: the sum divided by the world size. Integer tensors divide with truncation toward zero,
    /// as NCCL's <c>ncclAvg</c> does (PyTorch's gloo and MPI backends reject <c>AVG</c> outright).
    /// </summary>
    Avg = 1,
    /// <summary>Element-wise maximum.</summary>
    Max = 2,
    /// <summary>Element-wise minimum.</summary>
    Min = 3,
}
