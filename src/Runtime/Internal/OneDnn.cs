using System;
using System.Runtime.InteropServices;

namespace ModelDsl.Runtime.Internal;

/// <summary>
/// Runs a float LSTM or GRU on ATen's own recurrent kernels instead of oneDNN's. libtorch 2.10 hands a float32 CPU
/// LSTM/GRU to oneDNN whenever oneDNN is enabled, and on some AVX-512 CPUs oneDNN's recurrent kernels are wrong:
/// measured on a 2-core AMD EPYC guest (avx512f/bw/vl, avx512_vnni, avx512_bf16; 2026-12-02) a one-layer LSTM
/// differed from ONNX Runtime and from the AVX2 path by 2e-3 and trained to 69% where it reaches 85%+ elsewhere, and
/// capping oneDNN at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2_VNNI) made both right. ATen's kernels are the ones PyTorch uses
/// when oneDNN is off, and what our conformance vectors were made with. oneDNN stays on for everything else (it runs
/// the convolutions): it is switched off only around the recurrent call, through libtorch's own
/// <c>at::globalContext().setUserEnabledMkldnn</c>, and restored after. Where those symbols cannot be found (another
/// libtorch), the call runs as it is.
/// </summary>
internal static unsafe class OneDnn
{
    // at::globalContext(), and its userEnabledMkldnn / setUserEnabledMkldnn; Context is zero when not found.
    private static readonly IntPtr Context;
    private static readonly IntPtr Get;
    private static readonly IntPtr Set;

    static OneDnn()
    {
        // libtorch_cpu is loaded by TorchSharp by now (a module exists); dlopen finds it by its soname.
        if (NativeLibrary.TryLoad("libtorch_cpu.so", out IntPtr handle)
            && NativeLibrary.TryGetExport(handle, "_ZN2at13globalContextEv", out IntPtr context)
            && NativeLibrary.TryGetExport(handle, "_ZNK2at7Context17userEnabledMkldnnEv", out Get)
            && NativeLibrary.TryGetExport(handle, "_ZN2at7Context20setUserEnabledMkldnnEb", out Set))
            Context = ((delegate* unmanaged<IntPtr>)context)();
    }

    /// <summary>Runs <paramref name="run"/> with oneDNN disabled for libtorch's operators; the setting is restored after.</summary>
    public static T Without<T>(Func<T> run)
    {
        if (Context == IntPtr.Zero) return run();
        byte was = ((delegate* unmanaged<IntPtr, byte>)Get)(Context);
        ((delegate* unmanaged<IntPtr, byte, void>)Set)(Context, 0);
        try { return run(); }
        finally { ((delegate* unmanaged<IntPtr, byte, void>)Set)(Context, was); }
    }
}
