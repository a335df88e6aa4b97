using System.IO;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;

namespace ModelDsl.Generators.Tests;

/// <summary>The README's code is what a new user pastes first: it must build as it stands.</summary>
public class ReadmeTests
{
    [Fact]
    public void OpeningExample_PastedAsOneProgramFile_BuildsWithoutDiagnostics()
    {
        var readme = File.ReadAllText(Path.Combine(DiagnosticTests.RepoRoot(), "README.md"));
        var block = Regex.Match(readme, "```csharp\n(?<code>.*?)```", RegexOptions.Singleline);
        Assert.True(block.Success, "README.md has no csharp code block");

        // One file of a console project, exactly as pasted (top-level statements make it the entry point).
        var compilation = GeneratorHarness.Compile(new[] { ("Program.cs", block.Groups["code"].Value) }, kind: OutputKind.ConsoleApplication);
        var run = GeneratorHarness.Run(compilation);
        run.AssertNoGeneratorCrash();
        Assert.Empty(run.ModelDiagnostics);
        Assert.True(run.CompilerDiagnostics.Count == 0, string.Join("\n", run.CompilerDiagnostics));
        Assert.Contains(run.Result.GeneratedTrees, t => t.FilePath.EndsWith("DigitsCnn.Train.g.cs", StringComparison.Ordinal));
    }
}
