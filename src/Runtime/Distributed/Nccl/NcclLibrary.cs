using System;
using System.Runtime.InteropServices;

namespace ModelDsl.Runtime.Distributed.Nccl;

/// <summary>NCCL's unique id (<c>ncclUniqueId</c>): 128 opaque bytes, passed by value to <c>ncclCommInitRank</c>.</summary>
[StructLayout(LayoutKind.Sequential, Size = 128)]
internal unsafe struct NcclUniqueId
{
    public fixed byte Internal[128];
}

/// <summary>
/// NCCL's C API, bound at run time from <c>libnccl.so.2</c> so that a CPU-only build and machine never need it.
/// Enum values are NCCL's (<c>nccl.h</c>, stable since 2.10).
/// </summary>
internal sealed unsafe class NcclLibrary
{
    /// <summary>The environment variable that names the library to load instead of <c>libnccl.so.2</c>.</summary>
    public const string LibraryVariable = "MODELDSL_NCCL_LIBRARY";

    public const int Int8 = 0, Uint8 = 1, Int32 = 2, Int64 = 4, Float16 = 6, Float32 = 7, Float64 = 8, BFloat16 = 9;
    public const int OpSum = 0, OpMax = 2, OpMin = 3;

    private NcclLibrary(string path, IntPtr handle)
    {
        Path = path;
        IntPtr F(string name) => NativeLibrary.GetExport(handle, name);
        GetUniqueId = (delegate* unmanaged<NcclUniqueId*, int>)F("ncclGetUniqueId");
        CommInitRank = (delegate* unmanaged<IntPtr*, int, NcclUniqueId, int, int>)F("ncclCommInitRank");
        CommDestroy = (delegate* unmanaged<IntPtr, int>)F("ncclCommDestroy");
        AllReduce = (delegate* unmanaged<void*, void*, nuint, int, int, IntPtr, IntPtr, int>)F("ncclAllReduce");
        Broadcast = (delegate* unmanaged<void*, void*, nuint, int, int, IntPtr, IntPtr, int>)F("ncclBroadcast");
        AllGather = (delegate* unmanaged<void*, void*, nuint, int, IntPtr, IntPtr, int>)F("ncclAllGather");
        ReduceScatter = (delegate* unmanaged<void*, void*, nuint, int, int, IntPtr, IntPtr, int>)F("ncclReduceScatter");
        GetErrorString = (delegate* unmanaged<int, byte*>)F("ncclGetErrorString");
    }

    public string Path { get; }
    public delegate* unmanaged<NcclUniqueId*, int> GetUniqueId { get; }
    public delegate* unmanaged<IntPtr*, int, NcclUniqueId, int, int> CommInitRank { get; }
    public delegate* unmanaged<IntPtr, int> CommDestroy { get; }
    public delegate* unmanaged<void*, void*, nuint, int, int, IntPtr, IntPtr, int> AllReduce { get; }
    public delegate* unmanaged<void*, void*, nuint, int, int, IntPtr, IntPtr, int> Broadcast { get; }
    public delegate* unmanaged<void*, void*, nuint, int, IntPtr, IntPtr, int> AllGather { get; }
    public delegate* unmanaged<void*, void*, nuint, int, int, IntPtr, IntPtr, int> ReduceScatter { get; }
    public delegate* unmanaged<int, byte*> GetErrorString { get; }

    /// <summary>Loads <c>libnccl.so.2</c> (or the library <see cref="LibraryVariable"/> names).</summary>
    /// <exception cref="DistributedException">The library is missing or lacks the NCCL entry points.</exception>
    public static NcclLibrary Load()
    {
        string? configured = Environment.GetEnvironmentVariable(LibraryVariable);
        string name = string.IsNullOrEmpty(configured) ? "libnccl.so.2" : configured;
        if (!NativeLibrary.TryLoad(name, out IntPtr handle))
            throw new DistributedException(
                $"NCCL was not found ({name} could not be loaded). The NCCL backend needs NVIDIA's NCCL 2 (apt-get install libnccl2, "
                + $"or the CUDA build's own copy on the library path); use the MPI backend on machines without it.");
        if (!NativeLibrary.TryGetExport(handle, "ncclCommInitRank", out _))
            throw new DistributedException($"'{name}' is not NCCL: it has no ncclCommInitRank.");
        return new NcclLibrary(name, handle);
    }

    /// <summary>Throws a <see cref="DistributedException"/> naming the call when <paramref name="code"/> is not ncclSuccess.</summary>
    public void Check(int code, string call)
    {
        if (code != 0)
            throw new DistributedException($"{call} failed: {Marshal.PtrToStringAnsi((IntPtr)GetErrorString(code))} (NCCL error {code}).");
    }
}
