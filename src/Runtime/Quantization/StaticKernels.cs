using System.Runtime.Intrinsics;

namespace ModelDsl.Runtime.Quantization;

/// <summary>
/// The element work of static int8 layers around <see cref="Int8Gemm"/>: quantising the input (PyTorch's
/// <c>quantize_per_tensor</c>), im2col of a quantised image, and the output's requantisation, each one pass over memory.
/// </summary>
internal static class StaticKernels
{
    /// <summary>A convolution's sizes.</summary>
    public readonly record struct ConvGeometry(
        int Batch, int Channels, int Height, int Width, int KernelH, int KernelW,
        int StrideH, int StrideW, int PaddingH, int PaddingW, int DilationH, int DilationW)
    {
        public int OutH => (Height + 2 * PaddingH - DilationH * (KernelH - 1) - 1) / StrideH + 1;
        public int OutW => (Width + 2 * PaddingW - DilationW * (KernelW - 1) - 1) / StrideW + 1;
    }

    /// <summary>k rounded up to whole 32-byte vectors: the GEMM then never runs its scalar tail.</summary>
    public static int Padded(int k) => (k + 31) & ~31;

    /// <summary>
    /// <c>quantize_per_tensor(x, scale, zp, quint8)</c> of <paramref name="rows"/> rows of <paramref name="k"/> floats
    /// into rows of <paramref name="stride"/> bytes (the rest zero): <c>clamp(nearbyint(x · fl32(1/scale)) + zp, 0, 255)</c>.
    /// Returns whether any value exceeds 127.
    /// </summary>
    public static bool QuantizeRows(ReadOnlySpan<float> x, int rows, int k, int stride, float inverse, int zeroPoint, Span<byte> destination)
    {
        float zp = zeroPoint;
        var vInverse = Vector256.Create(inverse);
        var vZero = Vector256.Create(zp);
        var vMax = Vector256.Create(255f);
        var highest = Vector256<float>.Zero;
        float high = 0;
        for (int r = 0; r < rows; r++)
        {
            var src = x.Slice(r * k, k);
            var dst = destination.Slice(r * stride, stride);
            int i = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                for (; i + 32 <= k; i += 32)
                {
                    var a = Step(Vector256.Create(src.Slice(i, 8)), vInverse, vZero, vMax, ref highest);
                    var b = Step(Vector256.Create(src.Slice(i + 8, 8)), vInverse, vZero, vMax, ref highest);
                    var c = Step(Vector256.Create(src.Slice(i + 16, 8)), vInverse, vZero, vMax, ref highest);
                    var d = Step(Vector256.Create(src.Slice(i + 24, 8)), vInverse, vZero, vMax, ref highest);
                    // Narrowing truncates, which keeps the bits of 0..255 (sbyte's 128..255 are the bytes wanted).
                    Vector256.Narrow(Vector256.Narrow(a, b), Vector256.Narrow(c, d)).AsByte().CopyTo(dst.Slice(i, 32));
                }
            }
            for (; i < k; i++)
            {
                float q = MathF.Min(MathF.Max(MathF.Round(src[i] * inverse, MidpointRounding.ToEven) + zp, 0f), 255f);
                high = MathF.Max(high, q);
                dst[i] = (byte)q;
            }
            dst.Slice(k).Clear();
        }
        return high > 127f || Vector256.GreaterThanAny(highest, Vector256.Create(127f));
    }

    private static Vector256<int> Step(Vector256<float> x, Vector256<float> inverse, Vector256<float> zeroPoint, Vector256<float> max, ref Vector256<float> highest)
    {
        var q = Vector256.Round(x * inverse) + zeroPoint; // to nearest, ties to even, then the zero point (as quantize_val)
        q = Vector256.Min(Vector256.Max(q, Vector256<float>.Zero), max);
        highest = Vector256.Max(highest, q);
        return Vector256.ConvertToInt32(q);
    }

    /// <summary>
    /// im2col of a quantised image [B, C, H, W]: one row per output position (b, oh, ow), <paramref name="stride"/>
    /// bytes long, holding the window's values in the weight's (c, i, j) order; taps outside the image hold the zero
    /// point (a real 0), the row's tail past C·kH·kW holds 0 (the padded weight is 0 there).
    /// </summary>
    public static void Im2Col(ReadOnlySpan<byte> image, ConvGeometry g, byte padValue, int stride, Span<byte> columns)
    {
        int k = g.Channels * g.KernelH * g.KernelW, plane = g.Height * g.Width;
        int row = 0;
        for (int b = 0; b < g.Batch; b++)
        {
            var img = image.Slice(b * g.Channels * plane, g.Channels * plane);
            for (int oh = 0; oh < g.OutH; oh++)
            {
                for (int ow = 0; ow < g.OutW; ow++, row++)
                {
                    var dst = columns.Slice(row * stride, stride);
                    int col = 0;
                    for (int c = 0; c < g.Channels; c++)
                    {
                        var channel = img.Slice(c * plane, plane);
                        for (int i = 0; i < g.KernelH; i++)
                        {
                            int ih = oh * g.StrideH - g.PaddingH + i * g.DilationH;
                            if ((uint)ih >= (uint)g.Height)
                            {
                                dst.Slice(col, g.KernelW).Fill(padValue);
                                col += g.KernelW;
                                continue;
                            }
                            var line = channel.Slice(ih * g.Width, g.Width);
                            for (int j = 0; j < g.KernelW; j++, col++)
                            {
                                int iw = ow * g.StrideW - g.PaddingW + j * g.DilationW;
                                dst[col] = (uint)iw < (uint)g.Width ? line[iw] : padValue;
                            }
                        }
                    }
                    dst.Slice(k).Clear();
                }
            }
        }
    }

    /// <summary>
    /// In place: each value's output quantisation, as the float it stands for —
    /// <c>(clamp(nearbyint(y · inverse) + zp, low, 255) − zp) · scale</c> (low is the zero point after a fused ReLU, else 0).
    /// </summary>
    public static void Requantize(Span<float> y, float inverse, float zeroPoint, float scale, float low)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var vInverse = Vector256.Create(inverse);
            var vZero = Vector256.Create(zeroPoint);
            var vScale = Vector256.Create(scale);
            var vLow = Vector256.Create(low);
            var vHigh = Vector256.Create(255f);
            for (; i + 8 <= y.Length; i += 8)
            {
                var q = Vector256.Round(Vector256.Create(y.Slice(i, 8)) * vInverse) + vZero;
                ((Vector256.Min(Vector256.Max(q, vLow), vHigh) - vZero) * vScale).CopyTo(y.Slice(i, 8));
            }
        }
        for (; i < y.Length; i++)
            y[i] = One(y[i], inverse, zeroPoint, scale, low);
    }

    /// <summary><see cref="Requantize"/> from the GEMM's [B, positions, channels] into the convolution's [B, channels, positions].</summary>
    public static void RequantizeToChannels(ReadOnlySpan<float> y, int batch, int positions, int channels,
        float inverse, float zeroPoint, float scale, float low, Span<float> output)
    {
        for (int b = 0; b < batch; b++)
        {
            var src = y.Slice(b * positions * channels, positions * channels);
            var dst = output.Slice(b * positions * channels, positions * channels);
            for (int p = 0; p < positions; p++)
                for (int c = 0; c < channels; c++)
                    dst[c * positions + p] = One(src[p * channels + c], inverse, zeroPoint, scale, low);
        }
    }

    private static float One(float y, float inverse, float zeroPoint, float scale, float low) =>
        (MathF.Min(MathF.Max(MathF.Round(y * inverse, MidpointRounding.ToEven) + zeroPoint, low), 255f) - zeroPoint) * scale;
}
