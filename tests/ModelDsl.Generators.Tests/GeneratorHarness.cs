using System.Collections.Immutable;
using System.IO;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using ModelDsl.Generators;

namespace ModelDsl.Generators.Tests;

/// <summary>Runs the real generator over in-memory sources, the way the compiler does.</summary>
internal static class GeneratorHarness
{
    public const string Usings = "using ModelDsl;\nusing TorchSharp.Modules;\n";

    public static readonly CSharpParseOptions ParseOptions = new(LanguageVersion.Preview);

    internal static readonly MetadataReference[] References = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!)
        .Split(Path.PathSeparator)
        .Where(p => Path.GetFileName(p).StartsWith("System.", StringComparison.Ordinal) || Path.GetFileName(p) is "netstandard.dll" or "mscorlib.dll")
        .Append(typeof(ModelAttribute).Assembly.Location)
        .Append(typeof(TorchSharp.torch).Assembly.Location)
        .Append(typeof(ModelDsl.Runtime.Training.TrainingPlan).Assembly.Location)
        .Distinct()
        .Select(p => (MetadataReference)MetadataReference.CreateFromFile(p))
        .ToArray();

    public static CSharpCompilation Compile(IEnumerable<(string Path, string Text)> sources, bool withTorchSharp = true,
        OutputKind kind = OutputKind.DynamicallyLinkedLibrary) =>
        CSharpCompilation.Create("UserModels",
            sources.Select(s => CSharpSyntaxTree.ParseText(s.Text, ParseOptions, s.Path)),
            withTorchSharp ? References : References.Where(r => !r.Display!.EndsWith("TorchSharp.dll", StringComparison.Ordinal) && !r.Display!.EndsWith("ModelDsl.Runtime.dll", StringComparison.Ordinal)),
            new CSharpCompilationOptions(kind, nullableContextOptions: NullableContextOptions.Enable));

    public static CSharpCompilation CompileWithoutRuntime(string source) =>
        CSharpCompilation.Create("UserModels", new[] { CSharpSyntaxTree.ParseText(source, ParseOptions, "Model0.cs") },
            References.Where(r => !r.Display!.EndsWith("ModelDsl.Runtime.dll", StringComparison.Ordinal)),
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));

    public static CSharpCompilation Compile(params string[] sources) =>
        Compile(sources.Select((s, i) => ($"Model{i}.cs", s)));

    public static GeneratorDriver CreateDriver() =>
        CSharpGeneratorDriver.Create(
            new[] { new ModelGenerator().AsSourceGenerator() },
            parseOptions: ParseOptions,
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true));

    public static GeneratorRun Run(Compilation compilation)
    {
        var driver = CreateDriver().RunGeneratorsAndUpdateCompilation(compilation, out var output, out var generatorDiagnostics);
        return new GeneratorRun(driver, output, generatorDiagnostics);
    }

    public static GeneratorRun Run(params string[] sources) => Run(Compile(sources));
}

internal sealed record GeneratorRun(GeneratorDriver Driver, Compilation Output, ImmutableArray<Diagnostic> GeneratorDiagnostics)
{
    public GeneratorDriverRunResult Result => Driver.GetRunResult();

    /// <summary>The generator's MD diagnostics.</summary>
    public IReadOnlyList<Diagnostic> ModelDiagnostics => GeneratorDiagnostics.Where(d => d.Id.StartsWith("MD", StringComparison.Ordinal)).ToArray();

    /// <summary>Everything the compiler reports on the generated compilation (warnings and errors).</summary>
    public IReadOnlyList<Diagnostic> CompilerDiagnostics => Output.GetDiagnostics()
        .Where(d => d.Severity >= DiagnosticSeverity.Warning).ToArray();

    public string Source(string hintNameEnd) => Result.GeneratedTrees
        .Single(t => t.FilePath.EndsWith(hintNameEnd, StringComparison.Ordinal)).GetText().ToString();

    /// <summary>The generator must never throw: no exception in the result, no CS8785 from the driver.</summary>
    public void AssertNoGeneratorCrash()
    {
        Assert.All(Result.Results, r => Assert.Null(r.Exception));
        Assert.DoesNotContain(GeneratorDiagnostics, d => d.Id is "CS8785" or "CS8784");
        // The pipeline's last-resort catch turns an internal exception into MD0003; that must never be needed.
        Assert.DoesNotContain(GeneratorDiagnostics, d => d.GetMessage().Contains("failed on it", StringComparison.Ordinal));
    }
}

/// <summary>
/// Diagnostic markup, as in Roslyn's analyzer tests: <c>{|MD0101:64|}</c> marks the exact span a diagnostic must
/// cover. <see cref="Parse"/> strips the markup and returns the expected (id, span) pairs.
/// </summary>
internal static class Markup
{
    private static readonly Regex Pattern = new(@"\{\|(?<id>[A-Z]{2}\d{4}):(?<text>.*?)\|\}", RegexOptions.Singleline);

    public static (string Source, List<(string Id, int Start, int Length)> Expected) Parse(string markup)
    {
        var expected = new List<(string, int, int)>();
        var sb = new System.Text.StringBuilder();
        int last = 0;
        foreach (Match m in Pattern.Matches(markup))
        {
            sb.Append(markup, last, m.Index - last);
            var text = m.Groups["text"].Value;
            expected.Add((m.Groups["id"].Value, sb.Length, text.Length));
            sb.Append(text);
            last = m.Index + m.Length;
        }
        sb.Append(markup, last, markup.Length - last);
        return (sb.ToString(), expected);
    }

    /// <summary>Runs the generator on the marked-up source and asserts its MD diagnostics match id and span exactly.</summary>
    public static GeneratorRun Verify(string markup)
    {
        var (source, expected) = Parse(GeneratorHarness.Usings + markup);
        var run = GeneratorHarness.Run(source);
        run.AssertNoGeneratorCrash();
        var actual = run.ModelDiagnostics
            .Select(d => (d.Id, d.Location.SourceSpan.Start, d.Location.SourceSpan.Length))
            .OrderBy(d => d.Start).ThenBy(d => d.Id).ToList();
        var want = expected.OrderBy(d => d.Start).ThenBy(d => d.Id).ToList();
        Assert.True(want.SequenceEqual(actual),
            "Expected:\n" + Describe(source, want) + "\nActual:\n" + Describe(source, actual) + "\nMessages:\n" +
            string.Join("\n", run.ModelDiagnostics.Select(d => d.ToString())));
        return run;
    }

    private static string Describe(string source, IEnumerable<(string Id, int Start, int Length)> items) =>
        string.Join("\n", items.Select(i => $"  {i.Id} at {i.Start}: '{source.Substring(i.Start, Math.Min(i.Length, source.Length - i.Start))}'"));
}
