using System;
using System.Collections.Generic;

namespace ModelDsl.Distributed.TestHost;

/// <summary>Collects a scenario's checks; prints every failure with the rank and a one-line summary.</summary>
internal sealed class Checker
{
    private readonly int _rank;
    private readonly List<string> _failures = new();
    private int _count;

    public Checker(int rank) => _rank = rank;

    public void That(bool condition, string what)
    {
        _count++;
        if (!condition)
        {
            _failures.Add(what);
            Console.WriteLine($"FAIL rank {_rank}: {what}");
        }
    }

    /// <summary>Prints "PASS rank R: N checks" or "FAILED rank R: k of N checks" and returns the exit code.</summary>
    public int Finish(string scenario)
    {
        if (_failures.Count == 0)
        {
            Console.WriteLine($"PASS rank {_rank}: {scenario}: {_count} checks");
            return 0;
        }
        Console.WriteLine($"FAILED rank {_rank}: {scenario}: {_failures.Count} of {_count} checks");
        return 1;
    }
}
