using System;

namespace ModelDsl.Runtime.Distributed.Mpi;

/// <summary>
/// The one MPI initialisation of this process. MPI allows <c>MPI_Init_thread</c> once per process and nothing after
/// <c>MPI_Finalize</c>, so every <see cref="MpiProcessGroup"/> shares this state, and the process's end decides how
/// MPI ends: a clean exit finalizes; an exit code other than 0 or an unhandled exception aborts the whole job
/// (<c>MPI_Abort</c>), because a rank that finalizes and then fails leaves its peers waiting forever in their next
/// collective (measured with Open MPI 4.1.4: <c>mpirun</c> hangs).
/// </summary>
internal static unsafe class MpiRuntime
{
    private static readonly object Gate = new();
    private static MpiLibrary? _library;
    private static int _rank = -1;
    private static int _size;
    private static bool _finalized;

    /// <summary>The thread support MPI granted (<see cref="MpiLibrary.ThreadMultiple"/> is asked for).</summary>
    public static int ThreadLevel { get; private set; }

    /// <summary>Whether this process has initialised MPI (and not yet finalized it).</summary>
    public static bool IsInitialized => _library is not null && !_finalized;

    /// <summary>Initialises MPI once and returns the library, the rank and the size of <c>MPI_COMM_WORLD</c>.</summary>
    /// <exception cref="DistributedException">Open MPI is missing, is not Open MPI, or fails to initialise.</exception>
    public static (MpiLibrary Library, int Rank, int Size) EnsureInitialized()
    {
        lock (Gate)
        {
            if (_finalized)
                throw new DistributedException("MPI was already finalized in this process; it cannot be initialised again.");
            if (_library is not null)
                return (_library, _rank, _size);

            var library = MpiLibrary.Load();
            int flag = 0;
            library.Check(library.Initialized(&flag), "MPI_Initialized");
            if (flag == 0)
            {
                int provided = 0;
                library.Check(library.InitThread(null, null, MpiLibrary.ThreadMultiple, &provided), "MPI_Init_thread");
                ThreadLevel = provided;
            }
            else
            {
                ThreadLevel = MpiLibrary.ThreadMultiple;
            }

            // Errors come back as return codes (turned into DistributedException) instead of Open MPI's default of
            // aborting inside the library with its own message.
            library.Check(library.CommSetErrhandler(library.CommWorld, library.ErrorsReturn), "MPI_Comm_set_errhandler");
            int rank = 0, size = 0;
            library.Check(library.CommRank(library.CommWorld, &rank), "MPI_Comm_rank");
            library.Check(library.CommSize(library.CommWorld, &size), "MPI_Comm_size");

            _library = library;
            _rank = rank;
            _size = size;
            AppDomain.CurrentDomain.ProcessExit += OnProcessExit;
            AppDomain.CurrentDomain.UnhandledException += OnUnhandledException;
            return (library, rank, size);
        }
    }

    /// <summary>
    /// Prints one line naming this rank and <paramref name="reason"/> to standard error, then ends every rank of the
    /// job through <c>MPI_Abort</c> (mpirun kills the others). Never returns.
    /// </summary>
    public static void Abort(string? reason, int errorCode)
    {
        var library = _library;
        Console.Out.Flush();
        // A null reason: the failure was already reported (rank 0 printed the user's error), only the job ends.
        if (reason is not null)
            Console.Error.WriteLine(library is null ? $"error: {reason}" : $"error: rank {_rank} of {_size}: {reason}");
        Console.Error.Flush();
        if (library is not null && !_finalized)
            library.Abort(library.CommWorld, errorCode == 0 ? 1 : errorCode);
        // MPI_Abort does not return; if MPI was never initialised there is no job to end but this process.
        Environment.Exit(errorCode == 0 ? 1 : errorCode);
    }

    private static void OnUnhandledException(object sender, UnhandledExceptionEventArgs e) =>
        Abort(Describe(e.ExceptionObject as Exception), 1);

    /// <summary>One line for an exception: its type and message, and the innermost cause when there is one.</summary>
    public static string Describe(Exception? exception)
    {
        if (exception is null)
            return "failed with an unknown error";
        string text = $"{exception.GetType().Name}: {exception.Message}";
        Exception inner = exception;
        while (inner.InnerException is not null)
            inner = inner.InnerException;
        if (!ReferenceEquals(inner, exception))
            text += $" (caused by {inner.GetType().Name}: {inner.Message})";
        return text.ReplaceLineEndings(" ");
    }

    private static void OnProcessExit(object? sender, EventArgs e)
    {
        lock (Gate)
        {
            var library = _library;
            if (library is null || _finalized)
                return;
            int code = Environment.ExitCode;
            if (code != 0)
                Abort($"exited with code {code}", code);
            int flag = 0;
            library.Finalized(&flag);
            if (flag == 0)
                library.Finalize();
            _finalized = true;
        }
    }
}
