using System.Runtime.Intrinsics;

namespace ModelDsl.Runtime.Quantization;

/// <summary>
/// The per-call element work of dynamic int8 Linear — the input's min/max, its quantisation, and the float output —
/// as single SIMD passes over the tensors' memory.
/// </summary>
/// <remarks>
/// The same arithmetic as the torch ops it replaces (<c>x·inv + zp</c> in two float32 roundings, then round half to
/// even; int32 → float32 conversion, then <c>·scale + bias</c> in two roundings; RyuJIT does not contract these into
/// FMAs), so results are bit-identical to them. Written out because a chain of six small elementwise ATen ops, each
/// parallelised by OpenMP, cost more than the int8 matrix product itself on a loaded two-core machine (tens of
/// milliseconds against ~1 ms single-threaded), while one managed pass over 64×4096 floats takes ~0.2 ms.
/// </remarks>
internal static class ActivationKernels
{
    public static (float Min, float Max) MinMax(ReadOnlySpan<float> values)
    {
        int i = 0;
        float min = float.PositiveInfinity, max = float.NegativeInfinity;
        if (Vector256.IsHardwareAccelerated && values.Length >= 8)
        {
            var vmin = Vector256.Create(float.PositiveInfinity);
            var vmax = Vector256.Create(float.NegativeInfinity);
            for (; i + 8 <= values.Length; i += 8)
            {
                var v = Vector256.Create(values.Slice(i, 8));
                vmin = Vector256.Min(vmin, v);
                vmax = Vector256.Max(vmax, v);
            }
            for (int lane = 0; lane < 8; lane++)
            {
                min = MathF.Min(min, vmin[lane]);
                max = MathF.Max(max, vmax[lane]);
            }
        }
        for (; i < values.Length; i++)
        {
            min = MathF.Min(min, values[i]);
            max = MathF.Max(max, values[i]);
        }
        return (min, max);
    }

    /// <summary>
    /// <c>destination = clamp(nearbyint(x · inverse + zeroPoint), 0, 127) - offset</c>: with <c>offset = zeroPoint</c>
    /// the centred int8 values in [-127, 127] that <c>torch._int_mm</c> takes; with 0 the uint8 values (0..127, stored
    /// in the same bytes) that <see cref="Int8Gemm"/> takes.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> x, float inverse, int zeroPoint, int offset, Span<sbyte> destination)
    {
        int i = 0;
        float zp = zeroPoint, off = offset;
        if (Vector256.IsHardwareAccelerated)
        {
            var vInverse = Vector256.Create(inverse);
            var vZero = Vector256.Create(zp);
            var vOffset = Vector256.Create(off);
            var vMax = Vector256.Create(127f);
            for (; i + 32 <= x.Length; i += 32)
            {
                var a = Step(Vector256.Create(x.Slice(i, 8)), vInverse, vZero, vOffset, vMax);
                var b = Step(Vector256.Create(x.Slice(i + 8, 8)), vInverse, vZero, vOffset, vMax);
                var c = Step(Vector256.Create(x.Slice(i + 16, 8)), vInverse, vZero, vOffset, vMax);
                var d = Step(Vector256.Create(x.Slice(i + 24, 8)), vInverse, vZero, vOffset, vMax);
                Vector256.Narrow(Vector256.Narrow(a, b), Vector256.Narrow(c, d)).CopyTo(destination.Slice(i, 32));
            }
        }
        for (; i < x.Length; i++)
        {
            float q = MathF.Round(x[i] * inverse + zp, MidpointRounding.ToEven);
            destination[i] = (sbyte)(MathF.Min(MathF.Max(q, 0f), 127f) - off);
        }
    }

    private static Vector256<int> Step(Vector256<float> x, Vector256<float> inverse, Vector256<float> zeroPoint, Vector256<float> offset, Vector256<float> max)
    {
        var q = Vector256.Round(x * inverse + zeroPoint); // to nearest, ties to even
        q = Vector256.Min(Vector256.Max(q, Vector256<float>.Zero), max) - offset;
        return Vector256.ConvertToInt32(q);
    }

    /// <summary><c>destination[r, c] = (float)accumulated[r, c] · scale + bias[c]</c> (no bias when it is empty).</summary>
    public static void Dequantize(ReadOnlySpan<int> accumulated, float scale, ReadOnlySpan<float> bias, int columns, Span<float> destination)
    {
        var vScale = Vector256.Create(scale);
        for (int row = 0; row * columns < accumulated.Length; row++)
        {
            var acc = accumulated.Slice(row * columns, columns);
            var dst = destination.Slice(row * columns, columns);
            int c = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                for (; c + 8 <= columns; c += 8)
                {
                    var y = Vector256.ConvertToSingle(Vector256.Create(acc.Slice(c, 8))) * vScale;
                    if (!bias.IsEmpty)
                        y += Vector256.Create(bias.Slice(c, 8));
                    y.CopyTo(dst.Slice(c, 8));
                }
            }
            for (; c < columns; c++)
                dst[c] = bias.IsEmpty ? acc[c] * scale : acc[c] * scale + bias[c];
        }
    }
}
