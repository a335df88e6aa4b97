using System.Collections.Generic;
using System.Runtime.Intrinsics.X86;
using ModelDsl.Runtime.Quantization;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// <see cref="Int8Gemm"/>: every kernel this CPU supports (the AVX2 one forced on a VNNI machine too) against an exact
/// integer reference, bit for bit, across tile edges (rows not a multiple of 4, columns not of 3 or 2, k not of 32), the
/// extremes of the value ranges, and one or two threads. The end-to-end checks against PyTorch's vectors per kernel
/// are in <see cref="QuantizationTests"/>.
/// </summary>
[Collection(TorchGlobalRandom.Name)]
public class Int8GemmTests
{
    public static IEnumerable<object[]> Kernels() =>
        new[] { Int8Kernel.Scalar, Int8Kernel.Avx2, Int8Kernel.AvxVnni }.Where(Int8Gemm.IsSupported).Select(k => new object[] { k.ToString() });

    /// <summary>The kernels that take activations in all of [0, 255] (static int8 past its calibrated range).</summary>
    public static IEnumerable<object[]> FullRangeKernels() =>
        new[] { Int8Kernel.Scalar, Int8Kernel.Avx2FullRange, Int8Kernel.AvxVnni }.Where(Int8Gemm.IsSupported).Select(k => new object[] { k.ToString() });

    /// <summary>Σ (a − zp)·w in int64, then PyTorch's epilogue: (float)sum · scale + bias (scale per column where given).</summary>
    private static float[] Reference(byte[] a, sbyte[] w, int rows, int columns, int k, int zeroPoint, float scale, float[]? bias, float[]? scales = null)
    {
        var y = new float[rows * columns];
        for (int m = 0; m < rows; m++)
            for (int n = 0; n < columns; n++)
            {
                long sum = 0;
                for (int i = 0; i < k; i++) sum += (a[m * k + i] - zeroPoint) * (long)w[n * k + i];
                float value = (float)checked((int)sum) * (scales?[n] ?? scale);
                y[m * columns + n] = bias is null ? value : value + bias[n];
            }
        return y;
    }

    private static (byte[] A, sbyte[] W, float[]? Bias) Operands(Random random, int rows, int columns, int k, bool bias, int aboveA = 128)
    {
        var a = new byte[rows * k];
        var w = new sbyte[columns * k];
        for (int i = 0; i < a.Length; i++) a[i] = (byte)random.Next(0, aboveA);
        for (int i = 0; i < w.Length; i++) w[i] = (sbyte)random.Next(-128, 128);
        return (a, w, bias ? Enumerable.Range(0, columns).Select(_ => (float)random.NextDouble() * 4 - 2).ToArray() : null);
    }

    private static float[] Run(Int8Kernel kernel, byte[] a, sbyte[] w, int rows, int columns, int k, int zeroPoint, float scale, float[]? bias, int threads)
    {
        var y = new float[rows * columns];
        Int8Gemm.Linear(a, w, rows, columns, k, zeroPoint, scale, bias ?? Array.Empty<float>(), y, kernel, threads);
        return y;
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Kernel_IsBitIdenticalToTheExactReference_AtEveryTileEdge(string kernelName)
    {
        var kernel = Enum.Parse<Int8Kernel>(kernelName);
        var random = new Random(7);
        var shapes = new (int Rows, int Columns, int K)[]
        {
            (1, 1, 1), (1, 3, 31), (1, 10, 32), (2, 5, 33), (3, 7, 63), (4, 2, 64), (4, 3, 65), (5, 9, 100),
            (7, 1, 7), (8, 4, 129), (8, 5, 40), (4, 8, 70), (13, 17, 300), (64, 128, 1024), (64, 10, 128), (3, 600, 96),
        };
        foreach (var (rows, columns, k) in shapes)
        {
            int zeroPoint = random.Next(0, 128);
            float scale = (float)(random.NextDouble() * 1e-3 + 1e-6);
            var (a, w, bias) = Operands(random, rows, columns, k, bias: columns % 2 == 1);
            var expected = Reference(a, w, rows, columns, k, zeroPoint, scale, bias);
            var actual = Run(kernel, a, w, rows, columns, k, zeroPoint, scale, bias, threads: 1);
            int first = Enumerable.Range(0, expected.Length).FirstOrDefault(i => expected[i] != actual[i], -1);
            Assert.True(first < 0, $"{kernel} [{rows}x{k}]x[{columns}x{k}]ᵀ zp {zeroPoint}: at {first}, expected {(first < 0 ? 0 : expected[first]):R}, got {(first < 0 ? 0 : actual[first]):R}");
        }
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Kernel_AtTheRangesExtremes_DoesNotSaturate(string kernelName)
    {
        var kernel = Enum.Parse<Int8Kernel>(kernelName);
        // 127 · −128 twice is −32512, the most negative int16 pair sum vpmaddubsw forms from reduce_range activations.
        const int rows = 5, columns = 3, k = 4096;
        foreach (sbyte value in new sbyte[] { -128, 127 })
        {
            var a = Enumerable.Repeat((byte)127, rows * k).ToArray();
            var w = Enumerable.Repeat(value, columns * k).ToArray();
            foreach (int zeroPoint in new[] { 0, 127 })
            {
                var expected = Reference(a, w, rows, columns, k, zeroPoint, 1f, null);
                Assert.Equal(expected, Run(kernel, a, w, rows, columns, k, zeroPoint, 1f, null, threads: 1));
                if (zeroPoint == 0) Assert.Equal(127f * value * k, expected[0]);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void TwoThreads_GiveTheSameResultAsOne(string kernelName)
    {
        var kernel = Enum.Parse<Int8Kernel>(kernelName);
        var random = new Random(11);
        // Several column blocks shared out; then one block (the Digits Hidden layer's size) whose rows are shared out.
        foreach (var (rows, columns, k) in new[] { (33, 1030, 257), (65, 128, 1024) })
        {
            Assert.True((long)rows * columns * k >= Int8Gemm.ParallelThreshold);
            var (a, w, bias) = Operands(random, rows, columns, k, bias: true);
            var one = Run(kernel, a, w, rows, columns, k, 40, 3e-4f, bias, threads: 1);
            var two = Run(kernel, a, w, rows, columns, k, 40, 3e-4f, bias, threads: 2);
            Assert.Equal(one, two);
            Assert.Equal(Reference(a, w, rows, columns, k, 40, 3e-4f, bias), two);
        }
    }

    [Theory]
    [MemberData(nameof(FullRangeKernels))]
    public void FullRangeKernel_WithPerColumnScales_IsBitIdenticalToTheExactReference_AtEveryTileEdge(string kernelName)
    {
        var kernel = Enum.Parse<Int8Kernel>(kernelName);
        var random = new Random(17);
        foreach (var (rows, columns, k) in new[] { (1, 1, 32), (1, 5, 64), (2, 7, 96), (4, 2, 32), (5, 9, 128), (13, 17, 320), (64, 40, 160) })
        {
            int zeroPoint = random.Next(0, 256);
            var scales = Enumerable.Range(0, columns).Select(_ => (float)(random.NextDouble() * 1e-3 + 1e-6)).ToArray();
            var (a, w, bias) = Operands(random, rows, columns, k, bias: true, aboveA: 256);
            Assert.Contains(a, v => v > 127);
            var y = new float[rows * columns];
            Int8Gemm.Linear(a, w, rows, columns, k, zeroPoint, scales, bias, y, kernel, threads: 1);
            Assert.Equal(Reference(a, w, rows, columns, k, zeroPoint, 0f, bias, scales), y);
        }
    }

    [Fact]
    public void Avx2FullRange_IsExactAtTheWorstPairs_WhereThePlainAvx2KernelSaturates()
    {
        if (!Int8Gemm.IsSupported(Int8Kernel.Avx2)) return; // no AVX2: nothing to compare (the scalar kernel is the reference)
        const int rows = 4, columns = 2, k = 256;
        // 255·127 twice is 64770 and 128·−128 twice exactly int16's minimum: the split's two pair sums stay inside int16.
        foreach (var (aValue, wValue) in new (byte, sbyte)[] { (255, 127), (255, -128), (128, -128), (200, 99) })
        {
            var a = Enumerable.Repeat(aValue, rows * k).ToArray();
            var w = Enumerable.Repeat(wValue, columns * k).ToArray();
            var scales = new[] { 1f, 1f };
            var expected = Reference(a, w, rows, columns, k, 0, 1f, null);
            Assert.Equal((float)aValue * wValue * k, expected[0]);
            var y = new float[rows * columns];
            Int8Gemm.Linear(a, w, rows, columns, k, 0, scales, default, y, Int8Kernel.Avx2FullRange, threads: 1);
            Assert.Equal(expected, y);
            Int8Gemm.Linear(a, w, rows, columns, k, 0, scales, default, y, Int8Kernel.Avx2, threads: 1);
            Assert.True(aValue == 128 || !expected.SequenceEqual(y), $"plain vpmaddubsw should saturate at {aValue}·{wValue}");
        }
    }

    [Fact]
    public void Dispatch_PicksTheWidestKernelTheCpuHas()
    {
        var expected = AvxVnni.IsSupported ? Int8Kernel.AvxVnni : Avx2.IsSupported ? Int8Kernel.Avx2 : Int8Kernel.Torch;
        Assert.Equal(expected, Int8Gemm.Best);
        Assert.Equal(Avx2.IsSupported, Int8Gemm.IsSupported(Int8Kernel.Avx2));
        Assert.Equal(AvxVnni.IsSupported, Int8Gemm.IsSupported(Int8Kernel.AvxVnni));
    }

    [Fact]
    public void BadOperands_AreRefusedAtTheEntry()
    {
        var y = new float[4];
        Assert.Throws<ArgumentException>(() => Int8Gemm.Linear(new byte[3], new sbyte[4], 2, 2, 2, 0, 1f, default, y, Int8Kernel.Scalar, 1));
        Assert.Throws<ArgumentException>(() => Int8Gemm.Linear(new byte[4], new sbyte[4], 2, 2, 2, 0, 1f, new float[1], y, Int8Kernel.Scalar, 1));
        Assert.Throws<ArgumentException>(() => Int8Gemm.Linear(new byte[4], new sbyte[4], 2, 2, 2, 0, 1f, default, y, Int8Kernel.Torch, 1));
    }
}
