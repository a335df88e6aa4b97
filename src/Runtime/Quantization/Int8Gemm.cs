using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Threading.Tasks;

namespace ModelDsl.Runtime.Quantization;

/// <summary>The int8 matrix-product kernel a <see cref="DynamicQuantizedLinear"/> runs (docs/optimization.md).</summary>
internal enum Int8Kernel
{
    /// <summary>libtorch's <c>torch._int_mm</c> (oneDNN) behind torch ops: the fallback off x86-64.</summary>
    Torch,
    /// <summary>Plain C# loops: the reference the SIMD kernels are tested against.</summary>
    Scalar,
    /// <summary>AVX2: <c>vpmaddubsw</c> (u8·s8 pair sums in int16) then <c>vpmaddwd</c> by ones (int32).</summary>
    Avx2,
    /// <summary>
    /// AVX2 for activations in [0, 255] (static int8 past its calibrated range): each byte split into its low seven bits
    /// and its top bit, two <c>vpmaddubsw</c> that cannot saturate (twice the work of <see cref="Avx2"/>, exact for any
    /// uint8). What a static int8 layer runs on an AVX2 CPU when its quantised input exceeds 127.
    /// </summary>
    Avx2FullRange,
    /// <summary>AVX-VNNI (Intel Alder Lake / Sapphire Rapids and later, AMD Zen 5 and later): <c>vpdpbusd</c>, four u8·s8 products into int32 in one instruction.</summary>
    AvxVnni,
}

/// <summary>
/// The int8 GEMM of dynamic int8 Linear, with .NET hardware intrinsics:
/// <c>y[m, n] = (float)(Σₖ a[m, k]·w[n, k] − zeroPoint·Σₖ w[n, k]) · scale + bias[n]</c>, where <c>a</c> is the
/// quantised activation as uint8 in [0, 127] (reduce_range) and <c>w</c> the int8 weight in its stored [out, in]
/// layout. The integer sums are exact, so they equal <c>Σₖ (a − zp)·w</c>, what <c>torch._int_mm</c> computes on the
/// torch path; the float epilogue is the same two roundings as that path's <c>to(float32) · scale + bias</c>.
/// </summary>
/// <remarks>
/// <para>
/// No packed copy of the weight is kept: each output is a dot product of an activation row with a weight row, both
/// contiguous in k, so the stored buffer is the kernel's layout and a weight loaded in place (TorchSharp's
/// <c>load</c>, <c>copy_</c>) can never be stale. The weight's row sums (for the zero point) are taken per call, block
/// by block, while the block is in cache.
/// </para>
/// <para>
/// Blocking: the output columns are cut into blocks of <see cref="BlockColumns"/> weight rows (≤ 256 KiB of weight,
/// resident in L2) handed out to <c>threads</c> workers (a narrow layer shares its rows out too); inside a block, tiles
/// of 4 activation rows (in L1) × 3 weight rows (VNNI; 2 on AVX2, which needs two more registers per step) accumulate
/// int32 vectors over the whole of k, then reduce them horizontally; 1 × 4 tiles serve batch 1 and the last rows.
/// Values above 127 in <c>a</c> would saturate vpmaddubsw's int16 pair sums on the AVX2 path; reduce_range keeps them
/// out, and static int8, whose inputs can pass 127, runs <see cref="Int8Kernel.Avx2FullRange"/> for such calls.
/// </para>
/// </remarks>
internal static unsafe class Int8Gemm
{
    private const int TileRows = 4;
    private const int TileColumns = 2;
    private const int OneRowColumns = 4;
    private const int Lanes = 32; // bytes per Vector256

    /// <summary>Below this many multiply-adds a call runs on the calling thread only (a parallel loop costs more).</summary>
    internal const long ParallelThreshold = 1L << 22;

    /// <summary>The best kernel this CPU runs.</summary>
    public static Int8Kernel Best { get; } =
        AvxVnni.IsSupported ? Int8Kernel.AvxVnni : Avx2.IsSupported ? Int8Kernel.Avx2 : Int8Kernel.Torch;

    /// <summary>Tests and benchmarks force a kernel here (one the CPU supports); <c>null</c> runs <see cref="Best"/>.</summary>
    /// <remarks>Per thread: a test forcing a kernel does not switch other tests running at the same time.</remarks>
    internal static Int8Kernel? Forced { get => _forced; set => _forced = value; }

    [ThreadStatic] private static Int8Kernel? _forced;

    /// <summary>The kernel calls run now.</summary>
    public static Int8Kernel Current => Forced ?? Best;

    /// <summary>Whether this CPU can run <paramref name="kernel"/>.</summary>
    public static bool IsSupported(Int8Kernel kernel) => kernel switch
    {
        Int8Kernel.Torch or Int8Kernel.Scalar => true,
        Int8Kernel.Avx2 or Int8Kernel.Avx2FullRange => Avx2.IsSupported,
        Int8Kernel.AvxVnni => AvxVnni.IsSupported,
        _ => false,
    };

    /// <summary>
    /// <c>y = (a · wᵀ − zeroPoint · rowsum(w)) · scale + bias</c> for <c>a</c> [rows, k] uint8 in [0, 127],
    /// <c>w</c> [columns, k] int8, <c>y</c> [rows, columns] float32; <paramref name="bias"/> empty or [columns].
    /// </summary>
    public static void Linear(
        ReadOnlySpan<byte> a, ReadOnlySpan<sbyte> w, int rows, int columns, int k, int zeroPoint, float scale,
        ReadOnlySpan<float> bias, Span<float> y, Int8Kernel kernel, int threads) =>
        Linear(a, w, rows, columns, k, zeroPoint, scale, ReadOnlySpan<float>.Empty, bias, y, kernel, threads);

    /// <summary>
    /// The same with a scale per output column (static int8's per-channel weights): <c>y[m, n] = (Σₖ a·w − zeroPoint ·
    /// Σₖ w[n]) · scales[n] + bias[n]</c>. Where <c>a</c> holds values above 127 (static int8 past its calibrated range),
    /// the AVX2 path is <see cref="Int8Kernel.Avx2FullRange"/>.
    /// </summary>
    public static void Linear(
        ReadOnlySpan<byte> a, ReadOnlySpan<sbyte> w, int rows, int columns, int k, int zeroPoint, ReadOnlySpan<float> scales,
        ReadOnlySpan<float> bias, Span<float> y, Int8Kernel kernel, int threads)
    {
        if (scales.Length < columns)
            throw new ArgumentException($"Int8Gemm: {scales.Length} scales for {columns} columns.", nameof(scales));
        Linear(a, w, rows, columns, k, zeroPoint, 0f, scales, bias, y, kernel, threads);
    }

    private static void Linear(
        ReadOnlySpan<byte> a, ReadOnlySpan<sbyte> w, int rows, int columns, int k, int zeroPoint, float scale, ReadOnlySpan<float> scales,
        ReadOnlySpan<float> bias, Span<float> y, Int8Kernel kernel, int threads)
    {
        if (rows < 0 || columns < 0 || k <= 0)
            throw new ArgumentOutOfRangeException(nameof(k), $"Int8Gemm: bad sizes rows {rows}, columns {columns}, k {k}.");
        if ((long)rows * k > a.Length || (long)columns * k > w.Length || (long)rows * columns > y.Length)
            throw new ArgumentException($"Int8Gemm: spans too short for [{rows}, {k}] x [{columns}, {k}]ᵀ.");
        if (!bias.IsEmpty && bias.Length < columns)
            throw new ArgumentException($"Int8Gemm: bias has {bias.Length} values for {columns} columns.", nameof(bias));
        if (kernel == Int8Kernel.Torch || !IsSupported(kernel))
            throw new ArgumentException($"Int8Gemm cannot run the {kernel} kernel on this CPU.", nameof(kernel));
        if (rows == 0 || columns == 0)
            return;

        fixed (byte* pa = a)
        fixed (sbyte* pw = w)
        fixed (float* pb = bias)
        fixed (float* ps = scales)
        fixed (float* py = y)
        {
            int blocks = (columns + BlockColumns(k) - 1) / BlockColumns(k);
            bool parallel = threads > 1 && (long)rows * columns * k >= ParallelThreshold;
            // Fewer column blocks than threads (a narrow layer): the rows are shared out too, in multiples of a tile.
            int rowChunks = parallel && blocks < threads ? Math.Max(1, Math.Min(threads, rows / TileRows)) : 1;
            var job = new Job(pa, pw, bias.IsEmpty ? null : pb, scales.IsEmpty ? null : ps, py, rows, columns, k, zeroPoint, scale, kernel, rowChunks);
            if (!parallel || blocks * rowChunks == 1)
            {
                for (int item = 0; item < blocks; item++)
                    job.Run(item);
            }
            else
            {
                Parallel.For(0, blocks * rowChunks, new ParallelOptions { MaxDegreeOfParallelism = threads }, job.Run);
            }
        }
    }

    /// <summary>Weight rows per block: about 256 KiB of weight (at most 512 rows), a multiple of the tile widths.</summary>
    private static int BlockColumns(int k) => Math.Clamp(256 * 1024 / k / OneRowColumns * OneRowColumns, OneRowColumns, 512);

    /// <summary>One call's operands, as pointers pinned by <c>Linear</c> for the call's duration.</summary>
    [SkipLocalsInit] // the row sums' stack buffer is written before it is read (or multiplied by a zero point of 0)
    private sealed class Job(
        byte* a, sbyte* w, float* bias, float* scales, float* y, int rows, int columns, int k, int zeroPoint, float scale, Int8Kernel kernel, int rowChunks)
    {
        /// <summary>One work item: a block of columns, for one chunk of the rows (all rows unless they are shared out).</summary>
        public void Run(int item)
        {
            int width = BlockColumns(k);
            int n0 = item / rowChunks * width;
            int n1 = Math.Min(columns, n0 + width);
            int chunk = item % rowChunks, perChunk = (rows / rowChunks + TileRows - 1) / TileRows * TileRows;
            int m0 = Math.Min(rows, chunk * perChunk);
            int m1 = chunk == rowChunks - 1 ? rows : Math.Min(rows, m0 + perChunk);
            int* rowSums = stackalloc int[width];
            switch (kernel)
            {
                case Int8Kernel.AvxVnni: Block<VnniDot>(n0, n1, m0, m1, rowSums); break;
                case Int8Kernel.Avx2: Block<Avx2Dot>(n0, n1, m0, m1, rowSums); break;
                case Int8Kernel.Avx2FullRange: Block<Avx2FullRangeDot>(n0, n1, m0, m1, rowSums); break;
                default: ScalarBlock(n0, n1, m0, m1); break;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // compiled optimised at once: no slow tier-0 kernel calls
        private void Block<TDot>(int n0, int n1, int m0, int m1, int* rowSums) where TDot : struct, IDot
        {
            int* sums = stackalloc int[TileRows * 3];
            int n = n0;
            // The weight row sums only matter through zeroPoint·Σw: after a ReLU the input's minimum is 0, so the zero
            // point is 0 and this pass over the block is skipped (Store multiplies the row sums by zeroPoint).
            if (zeroPoint != 0)
            {
                for (; n + OneRowColumns <= n1; n += OneRowColumns)
                {
                    Tile1x4<TDot>(null, w + (long)n * k, sums);
                    for (int j = 0; j < OneRowColumns; j++) rowSums[n - n0 + j] = sums[j];
                }
                for (; n < n1; n++)
                    rowSums[n - n0] = Dot1x1<TDot>(null, w + (long)n * k);
            }

            int m = m0;
            for (; m + TileRows <= m1; m += TileRows)
            {
                byte* ra = a + (long)m * k;
                n = n0;
                if (typeof(TDot) == typeof(VnniDot)) // one instruction per step leaves registers for a third column
                {
                    for (; n + 3 <= n1; n += 3)
                    {
                        Tile4x3<TDot>(ra, w + (long)n * k, sums);
                        for (int i = 0; i < TileRows; i++)
                            for (int j = 0; j < 3; j++)
                                Store(m + i, n + j, sums[j * TileRows + i], rowSums[n + j - n0]);
                    }
                }
                for (; n + TileColumns <= n1; n += TileColumns)
                {
                    Tile4x2<TDot>(ra, w + (long)n * k, sums);
                    for (int i = 0; i < TileRows; i++)
                        for (int j = 0; j < TileColumns; j++)
                            Store(m + i, n + j, sums[j * TileRows + i], rowSums[n + j - n0]);
                }
                for (; n < n1; n++)
                    for (int i = 0; i < TileRows; i++)
                        Store(m + i, n, Dot1x1<TDot>(ra + (long)i * k, w + (long)n * k), rowSums[n - n0]);
            }
            for (; m < m1; m++)
            {
                byte* ra = a + (long)m * k;
                for (n = n0; n + OneRowColumns <= n1; n += OneRowColumns)
                {
                    Tile1x4<TDot>(ra, w + (long)n * k, sums);
                    for (int j = 0; j < OneRowColumns; j++)
                        Store(m, n + j, sums[j], rowSums[n + j - n0]);
                }
                for (; n < n1; n++)
                    Store(m, n, Dot1x1<TDot>(ra, w + (long)n * k), rowSums[n - n0]);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void ScalarBlock(int n0, int n1, int m0, int m1)
        {
            for (int n = n0; n < n1; n++)
            {
                sbyte* v = w + (long)n * k;
                int rowSum = 0;
                for (int i = 0; i < k; i++) rowSum += v[i];
                for (int m = m0; m < m1; m++)
                    Store(m, n, ScalarDot(a + (long)m * k, v, 0, k), rowSum);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Store(int m, int n, int sum, int rowSum)
        {
            // Two float32 roundings, as the torch path's to(float32).mul_(scale).add_(bias); RyuJIT does not fuse them.
            float value = (sum - zeroPoint * rowSum) * (scales is null ? scale : scales[n]);
            y[(long)m * columns + n] = bias is null ? value : value + bias[n];
        }

        /// <summary>Σ x[i]·v[i] over [from, to): the scalar reference, and the last k mod 32 products of the vector tiles.</summary>
        private static int ScalarDot(byte* x, sbyte* v, int from, int to)
        {
            int sum = 0;
            for (int i = from; i < to; i++) sum += x[i] * v[i];
            return sum;
        }

        /// <summary>Σₖ x[k]·v[k] for one activation row and one weight row (the last columns of a block); x = null sums v.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private int Dot1x1<TDot>(byte* x, sbyte* v) where TDot : struct, IDot
        {
            // Two accumulators, so that consecutive steps do not wait on each other's latency.
            Vector256<int> c0 = default, c1 = default;
            int whole = k & ~(Lanes - 1), i = 0;
            for (; i + 2 * Lanes <= whole; i += 2 * Lanes)
            {
                c0 = TDot.Dot(c0, Row(x, i), Vector256.Load(v + i));
                c1 = TDot.Dot(c1, Row(x, i + Lanes), Vector256.Load(v + i + Lanes));
            }
            if (i < whole)
                c0 = TDot.Dot(c0, Row(x, i), Vector256.Load(v + i));
            int sum = Vector256.Sum(c0 + c1);
            return sum + Tail(x, v); // after the vectors are dead: none lives across a call (the JIT would spill it in the loop)
        }

        /// <summary>1 activation row × 4 weight rows (batch 1, the rows below a multiple of 4, and the row sums with x = null).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Tile1x4<TDot>(byte* x, sbyte* v, int* sums) where TDot : struct, IDot
        {
            Vector256<int> c0 = default, c1 = default, c2 = default, c3 = default;
            sbyte* v1 = v + k, v2 = v + 2L * k, v3 = v + 3L * k;
            int whole = k & ~(Lanes - 1);
            for (int i = 0; i < whole; i += Lanes)
            {
                var a0 = Row(x, i);
                c0 = TDot.Dot(c0, a0, Vector256.Load(v + i));
                c1 = TDot.Dot(c1, a0, Vector256.Load(v1 + i));
                c2 = TDot.Dot(c2, a0, Vector256.Load(v2 + i));
                c3 = TDot.Dot(c3, a0, Vector256.Load(v3 + i));
            }
            Reduce4(c0, c1, c2, c3).Store(sums);
            if (whole == k) return;
            sums[0] += Tail(x, v); sums[1] += Tail(x, v1); sums[2] += Tail(x, v2); sums[3] += Tail(x, v3);
        }

        /// <summary>4 activation rows × 2 weight rows: 8 accumulators, 6 loads per 8 dot steps.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Tile4x2<TDot>(byte* x, sbyte* v, int* sums) where TDot : struct, IDot
        {
            Vector256<int> c00 = default, c01 = default, c10 = default, c11 = default;
            Vector256<int> c20 = default, c21 = default, c30 = default, c31 = default;
            byte* x1 = x + k, x2 = x + 2L * k, x3 = x + 3L * k;
            sbyte* v1 = v + k;
            int whole = k & ~(Lanes - 1);
            for (int i = 0; i < whole; i += Lanes)
            {
                var w0 = Vector256.Load(v + i);
                var w1 = Vector256.Load(v1 + i);
                var a0 = Vector256.Load(x + i);
                c00 = TDot.Dot(c00, a0, w0); c01 = TDot.Dot(c01, a0, w1);
                var a1 = Vector256.Load(x1 + i);
                c10 = TDot.Dot(c10, a1, w0); c11 = TDot.Dot(c11, a1, w1);
                var a2 = Vector256.Load(x2 + i);
                c20 = TDot.Dot(c20, a2, w0); c21 = TDot.Dot(c21, a2, w1);
                var a3 = Vector256.Load(x3 + i);
                c30 = TDot.Dot(c30, a3, w0); c31 = TDot.Dot(c31, a3, w1);
            }
            // Column-major: sums[j * 4 + i] for activation row i, weight row j.
            Reduce4(c00, c10, c20, c30).Store(sums);
            Reduce4(c01, c11, c21, c31).Store(sums + TileRows);
            if (whole == k) return;
            // The tail after the vectors are dead: none lives across a call (the JIT would spill it inside the loop).
            for (int r = 0; r < TileRows; r++)
                for (int j = 0; j < TileColumns; j++)
                    sums[j * TileRows + r] += Tail(x + r * (long)k, v + j * (long)k);
        }

        /// <summary>4 activation rows × 3 weight rows (VNNI): 12 accumulators, 7 loads per 12 dot steps.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Tile4x3<TDot>(byte* x, sbyte* v, int* sums) where TDot : struct, IDot
        {
            Vector256<int> c00 = default, c01 = default, c02 = default, c10 = default, c11 = default, c12 = default;
            Vector256<int> c20 = default, c21 = default, c22 = default, c30 = default, c31 = default, c32 = default;
            byte* x1 = x + k, x2 = x + 2L * k, x3 = x + 3L * k;
            sbyte* v1 = v + k, v2 = v + 2L * k;
            int whole = k & ~(Lanes - 1);
            for (int i = 0; i < whole; i += Lanes)
            {
                var w0 = Vector256.Load(v + i);
                var w1 = Vector256.Load(v1 + i);
                var w2 = Vector256.Load(v2 + i);
                var a0 = Vector256.Load(x + i);
                c00 = TDot.Dot(c00, a0, w0); c01 = TDot.Dot(c01, a0, w1); c02 = TDot.Dot(c02, a0, w2);
                var a1 = Vector256.Load(x1 + i);
                c10 = TDot.Dot(c10, a1, w0); c11 = TDot.Dot(c11, a1, w1); c12 = TDot.Dot(c12, a1, w2);
                var a2 = Vector256.Load(x2 + i);
                c20 = TDot.Dot(c20, a2, w0); c21 = TDot.Dot(c21, a2, w1); c22 = TDot.Dot(c22, a2, w2);
                var a3 = Vector256.Load(x3 + i);
                c30 = TDot.Dot(c30, a3, w0); c31 = TDot.Dot(c31, a3, w1); c32 = TDot.Dot(c32, a3, w2);
            }
            // Column-major: sums[j * 4 + i] for activation row i, weight row j.
            Reduce4(c00, c10, c20, c30).Store(sums);
            Reduce4(c01, c11, c21, c31).Store(sums + TileRows);
            Reduce4(c02, c12, c22, c32).Store(sums + 2 * TileRows);
            if (whole == k) return;
            for (int r = 0; r < TileRows; r++)
                for (int j = 0; j < 3; j++)
                    sums[j * TileRows + r] += Tail(x + r * (long)k, v + j * (long)k);
        }

        /// <summary>The four sums of four vectors' lanes, in three horizontal adds (integer adds wrap: exact mod 2³²).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector128<int> Reduce4(Vector256<int> a, Vector256<int> b, Vector256<int> c, Vector256<int> d)
        {
            var abcd = Avx2.HorizontalAdd(Avx2.HorizontalAdd(a, b), Avx2.HorizontalAdd(c, d));
            return abcd.GetLower() + abcd.GetUpper();
        }

        /// <summary>An activation vector, or ones (x = null) for a weight row's sum.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<byte> Row(byte* x, int i) => x is null ? Vector256.Create((byte)1) : Vector256.Load(x + i);

        /// <summary>The products past the last whole vector (k mod 32 of them), in scalar code.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private int Tail(byte* x, sbyte* v)
        {
            int whole = k & ~(Lanes - 1);
            if (whole == k) return 0;
            if (x is not null) return ScalarDot(x, v, whole, k);
            int sum = 0;
            for (int i = whole; i < k; i++) sum += v[i];
            return sum;
        }
    }

    /// <summary>One step of a dot product: eight int32 lanes, each += four u8·s8 products.</summary>
    private interface IDot
    {
        static abstract Vector256<int> Dot(Vector256<int> acc, Vector256<byte> a, Vector256<sbyte> w);
    }

    private readonly struct VnniDot : IDot
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<int> acc, Vector256<byte> a, Vector256<sbyte> w) =>
            AvxVnni.MultiplyWideningAndAdd(acc, a, w);
    }

    private readonly struct Avx2Dot : IDot
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<int> acc, Vector256<byte> a, Vector256<sbyte> w) =>
            // a ≤ 127 keeps each int16 pair sum within ±32512, so vpmaddubsw's saturation never applies.
            Avx2.Add(acc, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(a, w), Vector256.Create((short)1)));
    }

    private readonly struct Avx2FullRangeDot : IDot
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<int> acc, Vector256<byte> a, Vector256<sbyte> w)
        {
            // a = low + high with low ≤ 127 and high ∈ {0, 128}: the pair sums are within ±32512 and [−32768, 32512],
            // inside int16 (−32768 is 128·−128 twice, exactly int16's minimum), so neither vpmaddubsw saturates.
            var ones = Vector256.Create((short)1);
            var low = Avx2.MultiplyAddAdjacent(a & Vector256.Create((byte)0x7F), w);
            var high = Avx2.MultiplyAddAdjacent(a & Vector256.Create((byte)0x80), w);
            return Avx2.Add(acc, Avx2.Add(Avx2.MultiplyAddAdjacent(low, ones), Avx2.MultiplyAddAdjacent(high, ones)));
        }
    }
}
