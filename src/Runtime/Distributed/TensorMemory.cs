using System.Runtime.InteropServices;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// Raw access to a tensor's storage for the collective libraries, which read and write memory in place.
/// TorchSharp does not expose <c>data_ptr()</c>; its native library does (<c>THSTensor_data</c> returns
/// <c>at::Tensor::data_ptr()</c>: host memory for CPU tensors, device memory for CUDA tensors).
/// </summary>
internal static class TensorMemory
{
    // The same libLibTorchSharp.so TorchSharp itself loaded (same file name, so the loader hands back the
    // already-open handle, including the patched copy on Debian 12 / Ubuntu 22.04).
    [DllImport("LibTorchSharp")]
    private static extern IntPtr THSTensor_data(IntPtr handle);

    /// <summary>The address of the tensor's first element; <see cref="IntPtr.Zero"/> for an empty tensor.</summary>
    public static IntPtr DataPointer(Tensor tensor)
    {
        if (tensor.numel() == 0)
            return IntPtr.Zero;
        IntPtr p = THSTensor_data(tensor.Handle);
        if (p == IntPtr.Zero)
            throw new DistributedException($"Could not get the data pointer of a {tensor.dtype} tensor on {tensor.device}.");
        return p;
    }

    /// <summary>
    /// The elements of <paramref name="tensors"/>, in order, as one new flat tensor of <paramref name="dtype"/> (in the
    /// caller's dispose scope, if any): one collective moves them all instead of a round trip per tensor. The pieces
    /// live in a scope of their own, so this is safe to call outside one.
    /// </summary>
    public static Tensor Flatten(IEnumerable<Tensor> tensors, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        return cat(tensors.Select(t => t.detach().reshape(-1).to_type(dtype)).ToArray()).MoveToOuterDisposeScope();
    }

    /// <summary>The inverse of <see cref="Flatten"/>: copies <paramref name="flat"/>'s consecutive runs back into <paramref name="tensors"/>, in place.</summary>
    public static void Unflatten(Tensor flat, IEnumerable<Tensor> tensors)
    {
        using var noGrad = no_grad();
        long offset = 0;
        foreach (var t in tensors)
        {
            long n = t.numel();
            using var part = flat.narrow(0, offset, n);
            t.copy_(part.view(t.shape));
            offset += n;
        }
    }

    /// <summary>Bytes the tensor's elements occupy when contiguous.</summary>
    public static long ByteCount(Tensor tensor) => tensor.numel() * tensor.element_size();

    /// <summary>Whether the collectives can work on the tensor's memory as it is (dense, no gaps, no overlap).</summary>
    public static bool IsDense(Tensor tensor) => tensor.is_contiguous();

    /// <summary>Whether the dtype is one the reducing collectives support.</summary>
    public static bool IsReducible(ScalarType dtype) => dtype is ScalarType.Float32 or ScalarType.Float64
        or ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int32 or ScalarType.Int64 or ScalarType.Int16
        or ScalarType.Int8 or ScalarType.Byte;

    /// <summary>The PyTorch-style dtype name used in messages (<c>torch.float32</c>).</summary>
    public static string Name(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => "torch.float32",
        ScalarType.Float64 => "torch.float64",
        ScalarType.Float16 => "torch.float16",
        ScalarType.BFloat16 => "torch.bfloat16",
        ScalarType.Int32 => "torch.int32",
        ScalarType.Int64 => "torch.int64",
        ScalarType.Int16 => "torch.int16",
        ScalarType.Int8 => "torch.int8",
        ScalarType.Byte => "torch.uint8",
        ScalarType.Bool => "torch.bool",
        _ => dtype.ToString(),
    };

    /// <summary>Throws the PyTorch-like error for a tensor no reducing collective accepts.</summary>
    public static void CheckReducible(Tensor tensor, string operation)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!IsReducible(tensor.dtype))
            throw new ArgumentException(
                $"{operation}: unsupported dtype {Name(tensor.dtype)}; supported are float32, float64, float16, bfloat16, int64, int32, int16, int8 and uint8.",
                nameof(tensor));
    }
}
