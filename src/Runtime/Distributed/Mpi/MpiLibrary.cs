using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace ModelDsl.Runtime.Distributed.Mpi;

/// <summary>
/// Open MPI's C API, bound at run time from <c>libmpi.so.40</c> (Open MPI 4.x; 5.x keeps the soname and these
/// symbols). Binding lazily keeps the runtime usable without Open MPI installed: only a process that really joins
/// a multi-rank job needs it.
/// </summary>
/// <remarks>
/// Open MPI's handles are pointers, and its predefined handles are the addresses of exported globals: the C
/// macro <c>MPI_COMM_WORLD</c> expands to <c>&amp;ompi_mpi_comm_world</c>, <c>MPI_FLOAT</c> to
/// <c>&amp;ompi_mpi_float</c>, <c>MPI_SUM</c> to <c>&amp;ompi_mpi_op_sum</c>. <c>MPI_IN_PLACE</c> is
/// <c>(void*)1</c> and <c>MPI_STATUS_IGNORE</c> is a null pointer. Other MPI implementations (MPICH, Intel MPI)
/// use integer handles with a different ABI, which is why the library is checked to be Open MPI before any call.
/// </remarks>
internal sealed unsafe class MpiLibrary
{
    /// <summary>The environment variable that names the library to load instead of the default.</summary>
    public const string LibraryVariable = "MODELDSL_MPI_LIBRARY";

    public const int ThreadSingle = 0;
    public const int ThreadFunneled = 1;
    public const int ThreadSerialized = 2;
    public const int ThreadMultiple = 3;
    public static readonly IntPtr InPlace = 1;

    private static readonly string[] DefaultNames = { "libmpi.so.40", "libmpi.so" };

    private MpiLibrary(string path, IntPtr handle, string version)
    {
        Path = path;
        Version = version;
        IntPtr F(string name) => NativeLibrary.GetExport(handle, name);
        GetLibraryVersion = (delegate* unmanaged<byte*, int*, int>)F("MPI_Get_library_version");
        Initialized = (delegate* unmanaged<int*, int>)F("MPI_Initialized");
        Finalized = (delegate* unmanaged<int*, int>)F("MPI_Finalized");
        InitThread = (delegate* unmanaged<int*, byte***, int, int*, int>)F("MPI_Init_thread");
        Finalize = (delegate* unmanaged<int>)F("MPI_Finalize");
        CommRank = (delegate* unmanaged<IntPtr, int*, int>)F("MPI_Comm_rank");
        CommSize = (delegate* unmanaged<IntPtr, int*, int>)F("MPI_Comm_size");
        CommSetErrhandler = (delegate* unmanaged<IntPtr, IntPtr, int>)F("MPI_Comm_set_errhandler");
        ErrorString = (delegate* unmanaged<int, byte*, int*, int>)F("MPI_Error_string");
        Allreduce = (delegate* unmanaged<void*, void*, int, IntPtr, IntPtr, IntPtr, int>)F("MPI_Allreduce");
        Iallreduce = (delegate* unmanaged<void*, void*, int, IntPtr, IntPtr, IntPtr, IntPtr*, int>)F("MPI_Iallreduce");
        Bcast = (delegate* unmanaged<void*, int, IntPtr, int, IntPtr, int>)F("MPI_Bcast");
        Allgather = (delegate* unmanaged<void*, int, IntPtr, void*, int, IntPtr, IntPtr, int>)F("MPI_Allgather");
        ReduceScatterBlock = (delegate* unmanaged<void*, void*, int, IntPtr, IntPtr, IntPtr, int>)F("MPI_Reduce_scatter_block");
        Barrier = (delegate* unmanaged<IntPtr, int>)F("MPI_Barrier");
        Abort = (delegate* unmanaged<IntPtr, int, int>)F("MPI_Abort");
        Wait = (delegate* unmanaged<IntPtr*, void*, int>)F("MPI_Wait");
        Test = (delegate* unmanaged<IntPtr*, int*, void*, int>)F("MPI_Test");

        CommWorld = F("ompi_mpi_comm_world");
        ErrorsReturn = F("ompi_mpi_errors_return");
        Byte = F("ompi_mpi_byte");
        Float = F("ompi_mpi_float");
        Double = F("ompi_mpi_double");
        Int8 = F("ompi_mpi_int8_t");
        UInt8 = F("ompi_mpi_uint8_t");
        Int16 = F("ompi_mpi_int16_t");
        Int32 = F("ompi_mpi_int32_t");
        Int64 = F("ompi_mpi_int64_t");
        OpSum = F("ompi_mpi_op_sum");
        OpMax = F("ompi_mpi_op_max");
        OpMin = F("ompi_mpi_op_min");
    }

    public string Path { get; }
    /// <summary>The first line of <c>MPI_Get_library_version</c> (e.g. <c>Open MPI v4.1.4, package: Debian OpenMPI, …</c>).</summary>
    public string Version { get; }

    public delegate* unmanaged<byte*, int*, int> GetLibraryVersion { get; }
    public delegate* unmanaged<int*, int> Initialized { get; }
    public delegate* unmanaged<int*, int> Finalized { get; }
    public delegate* unmanaged<int*, byte***, int, int*, int> InitThread { get; }
    public delegate* unmanaged<int> Finalize { get; }
    public delegate* unmanaged<IntPtr, int*, int> CommRank { get; }
    public delegate* unmanaged<IntPtr, int*, int> CommSize { get; }
    public delegate* unmanaged<IntPtr, IntPtr, int> CommSetErrhandler { get; }
    public delegate* unmanaged<int, byte*, int*, int> ErrorString { get; }
    public delegate* unmanaged<void*, void*, int, IntPtr, IntPtr, IntPtr, int> Allreduce { get; }
    public delegate* unmanaged<void*, void*, int, IntPtr, IntPtr, IntPtr, IntPtr*, int> Iallreduce { get; }
    public delegate* unmanaged<void*, int, IntPtr, int, IntPtr, int> Bcast { get; }
    public delegate* unmanaged<void*, int, IntPtr, void*, int, IntPtr, IntPtr, int> Allgather { get; }
    public delegate* unmanaged<void*, void*, int, IntPtr, IntPtr, IntPtr, int> ReduceScatterBlock { get; }
    public delegate* unmanaged<IntPtr, int> Barrier { get; }
    public delegate* unmanaged<IntPtr, int, int> Abort { get; }
    public delegate* unmanaged<IntPtr*, void*, int> Wait { get; }
    public delegate* unmanaged<IntPtr*, int*, void*, int> Test { get; }

    public IntPtr CommWorld { get; }
    public IntPtr ErrorsReturn { get; }
    public IntPtr Byte { get; }
    public IntPtr Float { get; }
    public IntPtr Double { get; }
    public IntPtr Int8 { get; }
    public IntPtr UInt8 { get; }
    public IntPtr Int16 { get; }
    public IntPtr Int32 { get; }
    public IntPtr Int64 { get; }
    public IntPtr OpSum { get; }
    public IntPtr OpMax { get; }
    public IntPtr OpMin { get; }

    /// <summary>
    /// Loads the library named by <see cref="LibraryVariable"/>, else <c>libmpi.so.40</c>, and checks that it is
    /// Open MPI. Calls nothing that needs <c>MPI_Init</c> (<c>MPI_Get_library_version</c> may be called before it).
    /// </summary>
    /// <exception cref="DistributedException">The library is missing, is not MPI, or is not Open MPI.</exception>
    public static MpiLibrary Load()
    {
        string? configured = Environment.GetEnvironmentVariable(LibraryVariable);
        string[] candidates = string.IsNullOrEmpty(configured) ? DefaultNames : new[] { configured };
        IntPtr handle = IntPtr.Zero;
        string? loadedFrom = null;
        var errors = new List<string>();
        foreach (string name in candidates)
        {
            try
            {
                handle = NativeLibrary.Load(name);
                loadedFrom = name;
                break;
            }
            catch (DllNotFoundException e)
            {
                errors.Add(e.Message);
            }
        }
        if (handle == IntPtr.Zero || loadedFrom is null)
            throw new DistributedException(
                $"Open MPI was not found ({string.Join(", ", candidates)} could not be loaded); install Open MPI: apt-get install openmpi-bin"
                + (string.IsNullOrEmpty(configured) ? "" : $" (or fix {LibraryVariable}={configured})") + ".");

        if (!NativeLibrary.TryGetExport(handle, "MPI_Get_library_version", out IntPtr versionExport))
            throw new DistributedException(
                $"'{loadedFrom}' is not an MPI library: it has no MPI_Get_library_version. ModelDsl needs Open MPI's libmpi.so.40 (apt-get install openmpi-bin).");
        string version = ReadVersion((delegate* unmanaged<byte*, int*, int>)versionExport);
        CheckIsOpenMpi(version, loadedFrom);
        return new MpiLibrary(loadedFrom, handle, version);
    }

    /// <summary>
    /// Throws unless <paramref name="version"/> (from <c>MPI_Get_library_version</c>) names Open MPI: MPICH and its
    /// derivatives share the MPI names but not the ABI, so calling them through these bindings would crash.
    /// </summary>
    public static void CheckIsOpenMpi(string version, string path)
    {
        if (!version.StartsWith("Open MPI", StringComparison.Ordinal))
            throw new DistributedException(
                $"The MPI library '{path}' is not Open MPI (it reports \"{FirstLine(version)}\"). ModelDsl binds Open MPI's ABI: "
                + $"install Open MPI (apt-get install openmpi-bin) and put its libmpi.so.40 first, or set {LibraryVariable} to it.");
    }

    /// <summary>The library's text for an MPI error code.</summary>
    public string Describe(int code)
    {
        byte* buffer = stackalloc byte[512];
        int length = 0;
        if (ErrorString(code, buffer, &length) != 0 || length <= 0)
            return $"MPI error {code}";
        return Encoding.ASCII.GetString(buffer, Math.Min(length, 511));
    }

    /// <summary>Throws a <see cref="DistributedException"/> naming the call when <paramref name="code"/> is not MPI_SUCCESS.</summary>
    public void Check(int code, string call)
    {
        if (code != 0)
            throw new DistributedException($"{call} failed: {Describe(code)} (MPI error {code}).");
    }

    private static string ReadVersion(delegate* unmanaged<byte*, int*, int> getVersion)
    {
        // MPI_MAX_LIBRARY_VERSION_STRING is 256 in Open MPI; leave room for others' larger values.
        byte* buffer = stackalloc byte[8192];
        int length = 0;
        if (getVersion(buffer, &length) != 0 || length <= 0)
            return "";
        return Encoding.ASCII.GetString(buffer, Math.Min(length, 8191)).TrimEnd('\0', '\n', ' ');
    }

    private static string FirstLine(string text)
    {
        string line = text.Split('\n', 2)[0].Trim();
        return line.Length == 0 ? "no version" : line;
    }
}
