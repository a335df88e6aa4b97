using System;
using System.Collections.Generic;
using System.Text;
using System.Text.RegularExpressions;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// Condenses what <c>mpirun</c> writes to standard error when a job fails into one line that names the rank and the
/// cause, and passes everything else (the ranks' own standard error) through unchanged.
/// </summary>
/// <remarks>
/// Open MPI frames each of its messages between two lines of 74 dashes; a failed job typically produces two or
/// three such blocks of 5–20 lines plus "N more processes have sent help message" notes. The patterns recognised
/// are Open MPI 4.1's wording (orte/…/help-*.txt): <c>MPI_ABORT was invoked on rank R</c>,
/// <c>process rank R with PID P on node N exited on signal S (NAME)</c>, <c>process rank R … exiting improperly</c>,
/// and the <c>Process name: [[J,S],R] Exit code: C</c> pair. A block not recognised is passed through whole, so no
/// message is ever lost.
/// </remarks>
public sealed partial class MpirunOutputFilter
{
    private const string Rule = "--------------------------------------------------------------------------";
    private readonly Action<string> _write;
    private readonly HashSet<int> _ranksThatSpoke = new();
    private List<string>? _block;
    private string? _pending;

    /// <summary>Creates a filter that writes the lines it keeps (and its one condensed line) with <paramref name="write"/>.</summary>
    public MpirunOutputFilter(Action<string> write)
    {
        ArgumentNullException.ThrowIfNull(write);
        _write = write;
    }

    /// <summary>The condensed failure line, once <see cref="Complete"/> has written one; <see langword="null"/> otherwise.</summary>
    public string? FailureLine { get; private set; }

    /// <summary>The first line a failed rank printed itself (<c>error: rank R of N: cause</c>); <see langword="null"/> when none did.</summary>
    public string? FirstRankError { get; private set; }

    /// <summary>Takes one line of <c>mpirun</c>'s standard error.</summary>
    public void WriteLine(string line)
    {
        ArgumentNullException.ThrowIfNull(line);
        if (_block is not null)
        {
            if (line.Trim() == Rule)
            {
                var block = _block;
                _block = null;
                Condense(block);
            }
            else
            {
                _block.Add(line);
            }
            return;
        }
        if (line.Trim() == Rule)
        {
            _block = new List<string>();
            return;
        }
        // Notes about aggregated help messages, and mpirun failing to relay one while ranks abort at once
        // ("ORTE_ERROR_LOG: Data unpack would read past end of buffer in file …/show_help.c"), say nothing about the job.
        if (HelpAggregateNote().IsMatch(line) || (line.Contains("ORTE_ERROR_LOG", StringComparison.Ordinal) && line.Contains("show_help.c", StringComparison.Ordinal)))
            return;
        // A surviving rank's shared-memory transport reading from a peer that has died (process_vm_readv failing with
        // ESRCH, errno 3): "Read -1, expected 4096, errno = 3". The condensed line names the dead rank.
        if (PeerReadFailed().IsMatch(line))
            return;
        // A rank that failed under ProcessGroup.Abort already printed its own line: "error: rank R of N: cause".
        var own = RankErrorLine().Match(line);
        if (own.Success)
        {
            _ranksThatSpoke.Add(int.Parse(own.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
            FirstRankError ??= line;
        }
        _write(line);
    }

    /// <summary>
    /// Ends the stream: writes the condensed failure line, unless the failed rank already printed its own
    /// (<c>error: rank R of N: …</c>, which may arrive after mpirun's report, since the ranks' output is relayed);
    /// an unterminated block is passed through as it was.
    /// </summary>
    public void Complete()
    {
        if (_block is not null)
        {
            var block = _block;
            _block = null;
            _write(Rule);
            foreach (string line in block)
                _write(line);
        }
        if (_pending is not null && _ranksThatSpoke.Count == 0)
        {
            FailureLine = _pending;
            _write(_pending);
        }
        _pending = null;
    }

    private void Condense(List<string> block)
    {
        string text = Whitespace().Replace(string.Join(" ", block), " ");
        string? line = null;
        Match m;
        if ((m = AbortInvoked().Match(text)).Success)
        {
            line = $"error: rank {m.Groups[1].Value} called MPI_Abort (error code {m.Groups[2].Value}); the job was stopped.";
        }
        else if ((m = KilledBySignal().Match(text)).Success)
        {
            // Open MPI 4.1 reports "PID 0" for a killed rank; leave out a pid it does not know.
            string where = m.Groups[2].Value == "0" ? $"on {m.Groups[3].Value}" : $"pid {m.Groups[2].Value} on {m.Groups[3].Value}";
            line = $"error: rank {m.Groups[1].Value} ({where}) was killed by signal {m.Groups[4].Value} ({m.Groups[5].Value}); the job was stopped.";
        }
        else if ((m = ExitedImproperly().Match(text)).Success)
        {
            line = $"error: rank {m.Groups[1].Value} exited without finalizing MPI (it crashed or exited early); the job was stopped.";
        }
        else if ((m = NonZeroExit().Match(text)).Success)
        {
            line = $"error: rank {m.Groups[1].Value} exited with code {m.Groups[2].Value}; the job was stopped.";
        }
        else if (PrimaryJobTerminated().IsMatch(text))
        {
            // Preamble of the signal/exit block that follows; that one names the rank.
            line = "";
        }

        if (line is null)
        {
            _write(Rule);
            foreach (string l in block)
                _write(l);
            _write(Rule);
            return;
        }
        // The first report names the rank that failed first; the rest are consequences.
        if (line.Length > 0)
            _pending ??= line;
    }

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();

    [GeneratedRegex(@"error: rank (\d+) of \d+: ")]
    private static partial Regex RankErrorLine();

    [GeneratedRegex(@"MPI_ABORT was invoked on rank (\d+) in communicator \S+ with errorcode (-?\d+)")]
    private static partial Regex AbortInvoked();

    [GeneratedRegex(@"process rank (\d+) with PID (\d+) on node (\S+) exited on signal (\d+) \(([^)]*)\)")]
    private static partial Regex KilledBySignal();

    [GeneratedRegex(@"due to process rank (\d+) with PID \d+ on node \S+ exiting improperly")]
    private static partial Regex ExitedImproperly();

    [GeneratedRegex(@"Process name: \[\[\d+,\d+\],(\d+)\] Exit code: (-?\d+)")]
    private static partial Regex NonZeroExit();

    [GeneratedRegex(@"Primary job terminated normally, but \d+ process(es)? returned a non-zero exit code")]
    private static partial Regex PrimaryJobTerminated();

    [GeneratedRegex(@"^\[[^\]]+\] (\d+ more process(es)? (has|have) sent help message|Set MCA parameter ""orte_base_help_aggregate"")")]
    private static partial Regex HelpAggregateNote();

    [GeneratedRegex(@"^(\[[^\]]+\] ?)?Read -?\d+, expected \d+, errno = \d+$")]
    private static partial Regex PeerReadFailed();
}
