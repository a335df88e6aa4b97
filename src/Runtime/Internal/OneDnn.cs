using System;
using System.Linq;

namespace ModelDsl.Runtime.Internal;

/// <summary>
/// Keeps libtorch's oneDNN away from the two places where it computes wrong on the CPUs we measured, through
/// libtorch's own <c>at::globalContext().setUserEnabledMkldnn</c> (switched off around the call, restored after;
/// where the symbols cannot be found, another libtorch, calls run as they are):
/// <list type="bullet">
/// <item>Convolution backward passes when a convolution has a channel count that is not a multiple of 16. libtorch
/// 2.10's oneDNN then returns gradients that differ from run to run and are sometimes NaN: measured on a 2-core AMD
/// EPYC (avx512f/vnni/bf16, 2026-12-03) a residual CNN of 4/8 channels trained with AdamW gave NaN gradients in the
/// first steps on most runs at 2 threads (and at 1 thread with oneDNN capped at AVX2), 16/11 and 12/24 channels too,
/// while 16/32 and 32/16 gave the same finite losses on every run. Fine-tuning after a structured cut, which leaves
/// such counts, diverged. ATen's own kernels (oneDNN off for the backward pass only; the forward keeps oneDNN) give
/// the same losses on every run, equal to the all-ATen run's, at no measured cost.</item>
/// <item>Float LSTM/GRU: on the same CPU oneDNN's recurrent kernels differed from ONNX Runtime and from the AVX2 path
/// by 2e-3 and trained a one-layer LSTM to 69% where it reaches 85%+ elsewhere; they run on ATen's kernels, the ones
/// PyTorch uses when oneDNN is off and what our conformance vectors were made with.</item>
/// </list>
/// docs/optimization.md ("oneDNN and odd channel counts").
/// </summary>
internal static unsafe class OneDnn
{
    // at::Context::userEnabledMkldnn / setUserEnabledMkldnn; zero when not found (LibTorchContext).
    private static readonly IntPtr Context = LibTorchContext.Context;
    private static readonly IntPtr Get = LibTorchContext.Export("_ZNK2at7Context17userEnabledMkldnnEv");
    private static readonly IntPtr Set = LibTorchContext.Export("_ZN2at7Context20setUserEnabledMkldnnEb");

    /// <summary>
    /// Whether <paramref name="model"/>'s backward passes must run without oneDNN: it has a CPU convolution whose
    /// output channel count is not a multiple of 16 (the input channels of an inner convolution are an earlier one's
    /// outputs; those of the first read the data, whose gradient is not computed).
    /// </summary>
    public static bool NeedsAtenConvolutionBackward(TorchSharp.torch.nn.Module model)
        => Set != IntPtr.Zero && model.modules().OfType<TorchSharp.Modules.Convolution>()
            .Any(c => c.out_channels % 16 != 0 && c.weight is { } w && w.device_type == TorchSharp.DeviceType.CPU);

    /// <summary>
    /// <c>loss.backward()</c>, with oneDNN off when <paramref name="atenConvolutions"/> (what
    /// <see cref="NeedsAtenConvolutionBackward"/> says of the model): the trainer's step and tests that run a backward
    /// pass as the step does call this one piece.
    /// </summary>
    public static void Backward(TorchSharp.torch.Tensor loss, bool atenConvolutions)
    {
        if (atenConvolutions) Without(() => { loss.backward(); return 0; });
        else loss.backward();
    }

    /// <summary>Runs <paramref name="run"/> with oneDNN disabled for libtorch's operators; the setting is restored after.</summary>
    public static T Without<T>(Func<T> run) => With(false, run);

    /// <summary>Whether libtorch's operators may use oneDNN now (true where the switch cannot be found).</summary>
    public static bool Enabled => Get == IntPtr.Zero || ((delegate* unmanaged<IntPtr, byte>)Get)(Context) != 0;

    /// <summary>
    /// Runs <paramref name="run"/> with oneDNN enabled or not; the setting is restored after. A recomputed block runs its
    /// forward again with the setting its first forward had (<c>BlockRecompute</c>), so both take the same kernels.
    /// </summary>
    public static T With<T>(bool enabled, Func<T> run)
    {
        if (Set == IntPtr.Zero || Get == IntPtr.Zero) return run();
        byte was = ((delegate* unmanaged<IntPtr, byte>)Get)(Context);
        ((delegate* unmanaged<IntPtr, byte, void>)Set)(Context, enabled ? (byte)1 : (byte)0);
        try { return run(); }
        finally { ((delegate* unmanaged<IntPtr, byte, void>)Set)(Context, was); }
    }
}
