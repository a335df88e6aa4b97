namespace ModelDsl.Shapes
{
    /// <summary>
    /// The window of a convolution or pool: kernel, stride, padding and dilation per spatial axis (the height's, or a
    /// 1-D layer's only axis, and the width's, *W), how many kernel values were written, and a convolution's groups.
    /// </summary>
    internal sealed record WindowArguments(
        long Kernel, long Stride, long Padding, long Dilation,
        long KernelW, long StrideW, long PaddingW, long DilationW,
        int KernelValues = 1, long Groups = 1) : KindArguments
    {
        /// <summary>
        /// Reads a window: a 2-D kernel is one number (square) or a (height, width) array; per-axis settings (StrideH,
        /// StrideW, ...) override the plain one, and -1, their default, means "not set". A stride not written is
        /// <paramref name="defaultStride"/> (pools: 0, "the kernel size").
        /// </summary>
        public static WindowArguments Read(ILayerArguments a, long defaultStride)
        {
            long[]? kernelPair = a.LongArray("kernelSize");
            long kernel = a.Long("kernelSize") ?? (kernelPair is { Length: > 0 } ? kernelPair[0] : -1);
            long stride = a.Long("Stride") ?? defaultStride;
            long padding = a.Long("Padding") ?? 0;
            long dilation = a.Long("Dilation") ?? 1;
            return new WindowArguments(
                kernel, Axis(a, "StrideH") ?? stride, Axis(a, "PaddingH") ?? padding, Axis(a, "DilationH") ?? dilation,
                kernelPair is { Length: > 1 } ? kernelPair[1] : kernel, Axis(a, "StrideW") ?? stride, Axis(a, "PaddingW") ?? padding, Axis(a, "DilationW") ?? dilation,
                kernelPair?.Length ?? (a.Has("kernelSize") && a.Long("kernelSize") is null ? 0 : 1),
                a.Long("Groups") ?? 1);
        }

        /// <summary>The window as the module takes it: a pool's stride 0 is its kernel size.</summary>
        public WindowArguments Resolved => this with { Stride = Stride <= 0 ? Kernel : Stride, StrideW = StrideW <= 0 ? KernelW : StrideW };

        /// <summary>Whether both axes have the same values (then one number says each).</summary>
        public bool IsSquare => Kernel == KernelW && Stride == StrideW && Padding == PaddingW && Dilation == DilationW;

        /// <summary>A per-axis setting (StrideH, PaddingW, ...); its default -1 means "as the plain setting".</summary>
        private static long? Axis(ILayerArguments a, string name) => a.Long(name) is { } v && v != -1 ? v : null;
    }
}
