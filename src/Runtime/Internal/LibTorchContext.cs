using System;
using System.Runtime.InteropServices;

namespace ModelDsl.Runtime.Internal;

/// <summary>
/// libtorch's global context (<c>at::globalContext()</c>) and the switches of it this runtime sets, reached through
/// libtorch_cpu's exported symbols (TorchSharp binds none of them). Where a symbol cannot be found (another libtorch),
/// <see cref="Export"/> gives zero and the callers leave libtorch as it is.
/// </summary>
internal static unsafe class LibTorchContext
{
    private static readonly IntPtr Library;

    /// <summary>The context object, or zero when libtorch_cpu or the symbol was not found.</summary>
    public static readonly IntPtr Context;

    private static readonly IntPtr SetNnpack, GetNnpack;
    private static int _nnpackOff;

    static LibTorchContext()
    {
        // libtorch_cpu is loaded by TorchSharp by the time a module or tensor exists; dlopen finds it by its soname.
        if (NativeLibrary.TryLoad("libtorch_cpu.so", out Library)
            && NativeLibrary.TryGetExport(Library, "_ZN2at13globalContextEv", out IntPtr context))
            Context = ((delegate* unmanaged<IntPtr>)context)();
        SetNnpack = Export("_ZN2at7Context20setUserEnabledNNPACKEb");
        GetNnpack = Export("_ZNK2at7Context17userEnabledNNPACKEv");
    }

    /// <summary>The address of libtorch_cpu's exported <paramref name="symbol"/>, or zero (also when the context was not found).</summary>
    public static IntPtr Export(string symbol)
        => Context != IntPtr.Zero && NativeLibrary.TryGetExport(Library, symbol, out IntPtr address) ? address : IntPtr.Zero;

    /// <summary>
    /// Turns NNPACK off (PyTorch's <c>torch.backends.nnpack.set_flags(False)</c>), once per process. libtorch tries
    /// NNPACK for a convolution without gradient that oneDNN declines (batch 1 of a small input, for one); on CPUs its
    /// bundled cpuinfo does not know (an AMD EPYC of 2026, measured) NNPACK fails to initialise and libtorch prints
    /// "Could not initialize NNPACK! Reason: Unsupported hardware." on every such call — hundreds of lines in the
    /// optimisation pipeline's latency measurement — before running ATen's own kernel, which is what runs with it off.
    /// The trainer and <c>ModelLoader</c> call this.
    /// </summary>
    public static void TurnOffNnpack()
    {
        if (SetNnpack == IntPtr.Zero || System.Threading.Interlocked.Exchange(ref _nnpackOff, 1) == 1) return;
        ((delegate* unmanaged<IntPtr, byte, void>)SetNnpack)(Context, 0);
    }

    /// <summary>Whether libtorch may try NNPACK now; null where the switch cannot be found.</summary>
    public static bool? NnpackEnabled => GetNnpack == IntPtr.Zero ? null : ((delegate* unmanaged<IntPtr, byte>)GetNnpack)(Context) != 0;
}
