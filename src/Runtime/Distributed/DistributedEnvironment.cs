using System;
using System.Collections;
using System.Globalization;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// What the launcher told this process about its place in a job, read from the environment before any collective
/// library is loaded: <c>mpirun</c> (Open MPI's <c>OMPI_COMM_WORLD_*</c>), PMI-based launchers (MPICH/Hydra,
/// Intel MPI: <c>PMI_RANK</c>/<c>PMI_SIZE</c>) and Slurm's <c>srun</c> (<c>SLURM_PROCID</c> with
/// <c>SLURM_STEP_NUM_TASKS</c>, or <c>SLURM_NTASKS</c>).
/// </summary>
/// <remarks>
/// Slurm sets <c>SLURM_PROCID=0</c> and <c>SLURM_NTASKS</c> in a batch script too, where the program is not a rank
/// of a parallel step and its "other ranks" never start; only a process inside an <c>srun</c> step (a
/// <c>SLURM_STEP_ID</c> that is not one of Slurm's special batch, extern or interactive step ids) is taken for a
/// rank. Its world size is the step's task count (<c>SLURM_STEP_NUM_TASKS</c>, else <c>SLURM_NTASKS</c>).
/// </remarks>
public sealed record DistributedEnvironment(int Rank, int WorldSize, int LocalRank, string Launcher)
{
    /// <summary>The environment of the current process; <see langword="null"/> when no launcher started it.</summary>
    public static DistributedEnvironment? Current => Detect(Environment.GetEnvironmentVariables());

    /// <summary>Whether the current process is a rank started by <c>mpirun</c>, a PMI launcher or <c>srun</c>.</summary>
    public static bool IsMpiRank => Current is not null;

    /// <summary>Reads the launcher's variables from <paramref name="variables"/> (e.g. a copy of the environment).</summary>
    /// <exception cref="DistributedException">The variables are present but not numbers, or the rank is out of range.</exception>
    public static DistributedEnvironment? Detect(IDictionary variables)
    {
        ArgumentNullException.ThrowIfNull(variables);
        string? Get(string name) => variables.Contains(name) ? variables[name]?.ToString() : null;

        if (Get("OMPI_COMM_WORLD_RANK") is { } ompiRank)
            return Parse("mpirun", "OMPI_COMM_WORLD_RANK", ompiRank, "OMPI_COMM_WORLD_SIZE", Get("OMPI_COMM_WORLD_SIZE"),
                Get("OMPI_COMM_WORLD_LOCAL_RANK"));
        if (Get("PMI_RANK") is { } pmiRank)
            return Parse("pmi", "PMI_RANK", pmiRank, "PMI_SIZE", Get("PMI_SIZE"), Get("MPI_LOCALRANKID"));
        if (Get("SLURM_PROCID") is { } slurmRank && Get("SLURM_STEP_ID") is { } step && IsSrunStep(step))
        {
            string sizeName = Get("SLURM_STEP_NUM_TASKS") is null ? "SLURM_NTASKS" : "SLURM_STEP_NUM_TASKS";
            return Parse("srun", "SLURM_PROCID", slurmRank, sizeName, Get(sizeName), Get("SLURM_LOCALID"));
        }
        return null;
    }

    // Slurm's special step ids (slurm.h: SLURM_PENDING_STEP .. SLURM_EXTERN_CONT are 0xFFFFFFF9..0xFFFFFFFF; the batch
    // script is SLURM_BATCH_SCRIPT = 0xFFFFFFFE); older versions write the names.
    private static bool IsSrunStep(string step) =>
        step is not ("batch" or "extern" or "interactive")
        && !(uint.TryParse(step, NumberStyles.Integer, CultureInfo.InvariantCulture, out uint id) && id >= 0xFFFFFFF9u);

    private static DistributedEnvironment Parse(string launcher, string rankName, string rankText, string sizeName,
        string? sizeText, string? localText)
    {
        int rank = ParseInt(rankName, rankText);
        if (sizeText is null)
            throw new DistributedException($"{rankName} is set but {sizeName} is not; the launcher ({launcher}) left the environment incomplete.");
        int size = ParseInt(sizeName, sizeText);
        if (size < 1 || rank < 0 || rank >= size)
            throw new DistributedException($"Invalid rank {rank} for world size {size} ({rankName}, {sizeName}); rank should be in the interval [0, {size - 1}].");
        int local = localText is null ? 0 : ParseInt("local rank", localText);
        return new DistributedEnvironment(rank, size, local, launcher);
    }

    private static int ParseInt(string name, string text) =>
        int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value)
            ? value
            : throw new DistributedException($"{name}='{text}' is not an integer.");
}
