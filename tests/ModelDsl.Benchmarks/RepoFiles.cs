using System;
using System.IO;

namespace ModelDsl.Benchmarks;

/// <summary>Files of this repository, found by walking up from the running assembly (bin/Release/net10.0/...).</summary>
internal static class RepoFiles
{
    /// <summary>The training set of the Digits sample.</summary>
    public const string DigitsTraining = "samples/Digits/data/optdigits.tra";

    /// <summary>The first <paramref name="relative"/> path that exists above the running assembly, or null.</summary>
    public static string? FindUp(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, relative);
            if (File.Exists(candidate))
                return candidate;
        }
        return null;
    }

    /// <summary><see cref="FindUp"/>, or a <see cref="FileNotFoundException"/> naming the path.</summary>
    public static string Require(string relative) =>
        FindUp(relative) ?? throw new FileNotFoundException($"{relative} not found above {AppContext.BaseDirectory}");

    /// <summary>The repository root (the folder holding ModelDsl.sln).</summary>
    public static string Root() => Path.GetDirectoryName(Require("ModelDsl.sln"))!;
}
