namespace ModelDsl.Runtime.Inference
{
    /// <summary>Raw little-endian tensor data in and out of libtorch, shared by the safetensors and PyTorch formats.</summary>
    internal static class TensorBytes
    {
        /// <summary>The element size of the dtypes the file formats carry; other dtypes are refused.</summary>
        public static int ElementSize(ScalarType dtype) => dtype switch
        {
            ScalarType.Float64 or ScalarType.Int64 => 8,
            ScalarType.Float32 or ScalarType.Int32 => 4,
            ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
            ScalarType.Int8 or ScalarType.Byte or ScalarType.Bool => 1,
            _ => throw new NotSupportedException($"tensors of dtype {dtype} cannot be stored in a model file"),
        };

        /// <summary>The tensor's elements in row-major order as little-endian bytes (libtorch's own CPU layout on x64).</summary>
        public static byte[] Read(Tensor tensor)
        {
            if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("model files are little-endian; this machine is not");
            using var scope = torch.NewDisposeScope();
            var cpu = tensor.detach().cpu().contiguous();
            return cpu.bytes.ToArray();
        }

        /// <summary>A new CPU tensor of <paramref name="shape"/> and <paramref name="dtype"/> holding a copy of <paramref name="data"/>.</summary>
        public static Tensor Create(ReadOnlySpan<byte> data, long[] shape, ScalarType dtype)
        {
            long count = shape.Aggregate(1L, (a, b) => a * b);
            if (count * ElementSize(dtype) != data.Length)
                throw new InvalidDataException($"{data.Length} bytes do not hold {count} elements of {dtype}");
            var result = torch.empty(shape, dtype);
            if (data.Length > 0) data.CopyTo(result.bytes);
            return result;
        }
    }
}
