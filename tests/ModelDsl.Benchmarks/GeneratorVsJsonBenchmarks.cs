using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Text;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using ModelDsl.Generators;

namespace ModelDsl.Benchmarks;

/// <summary>
/// This generator's cost against an anchor every .NET developer already pays for: the System.Text.Json source generator
/// (the copy in the SDK's Microsoft.NETCore.App.Ref analyzers folder, the one a build runs), over 100 [JsonSerializable]
/// types, against this generator over 100 models (GeneratorBenchmarks' models). Two situations, each its own category
/// with System.Text.Json as the baseline, so the Ratio column is this generator's cost in units of STJ's:
/// a full run (a fresh driver, a compilation with fresh symbols: a command-line build) and a run after an edit to a
/// file that neither generator cares about (a warm driver: the IDE after a keystroke elsewhere). A third row in each
/// category is a floor: finding the same 100 classes and having Roslyn bind the attributes on their members, which any
/// generator reading these declarations pays, and which Roslyn repeats for every compilation.
/// </summary>
/// <remarks>
/// Both compilations have the same shape: ten files of ten declarations each, plus one unrelated file (a class with a
/// method) that the edit changes. The STJ side declares 100 POCO classes of 3-8 properties (numbers, strings, lists,
/// nested POCOs) and, in each file, a JsonSerializerContext with [JsonSerializable] for that file's ten types.
/// </remarks>
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
[MedianColumn]
public class GeneratorVsJsonBenchmarks
{
    private const int Files = 10;
    private const int PerFile = 10;

    private static readonly CSharpParseOptions ParseOptions = new(LanguageVersion.Preview);
    private static readonly GeneratorDriverOptions DriverOptions = new(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: false);

    private Side models = null!;
    private Side json = null!;
    private Side floor = null!;

    [GlobalSetup]
    public void Setup()
    {
        var jsonGenerator = JsonGenerator();
        models = new Side(new ModelGenerator(),
            Enumerable.Range(0, Files).Select(f => GeneratorBenchmarks.Source(f, edited: false)), References(typeof(ModelAttribute).Assembly.Location, typeof(TorchSharp.torch).Assembly.Location));
        json = new Side(jsonGenerator, Enumerable.Range(0, Files).Select(JsonSource), References());
        floor = new Side(new BindModelAttributesOnly(),
            Enumerable.Range(0, Files).Select(f => GeneratorBenchmarks.Source(f, edited: false)), References(typeof(ModelAttribute).Assembly.Location, typeof(TorchSharp.torch).Assembly.Location));

        // What is measured must be real: each generator produces its code without errors, and the unrelated edit
        // leaves every output of both as it was.
        models.Verify(minFiles: 100, "ModelDsl");
        json.Verify(minFiles: 100, "System.Text.Json");

        // Tiered JIT: see GeneratorBenchmarks.Setup. Run each until steady before BenchmarkDotNet measures.
        var warmUp = System.Diagnostics.Stopwatch.StartNew();
        for (int round = 0; (round < 20 || warmUp.Elapsed < TimeSpan.FromSeconds(5)) && warmUp.Elapsed < TimeSpan.FromSeconds(30); round++)
        {
            JsonFullRun(); ModelDslFullRun(); FloorFullRun(); JsonAfterUnrelatedEdit(); ModelDslAfterUnrelatedEdit(); FloorAfterUnrelatedEdit();
        }
    }

    [Benchmark(Baseline = true, Description = "System.Text.Json, 100 types")]
    [BenchmarkCategory("Full run")]
    public GeneratorDriver JsonFullRun() => json.FullRun();

    [Benchmark(Description = "ModelDsl, 100 models")]
    [BenchmarkCategory("Full run")]
    public GeneratorDriver ModelDslFullRun() => models.FullRun();

    [Benchmark(Description = "Binding the models' attributes alone (floor)")]
    [BenchmarkCategory("Full run")]
    public GeneratorDriver FloorFullRun() => floor.FullRun();

    [Benchmark(Baseline = true, Description = "System.Text.Json, 100 types")]
    [BenchmarkCategory("After an unrelated edit")]
    public GeneratorDriver JsonAfterUnrelatedEdit() => json.AfterUnrelatedEdit();

    [Benchmark(Description = "ModelDsl, 100 models")]
    [BenchmarkCategory("After an unrelated edit")]
    public GeneratorDriver ModelDslAfterUnrelatedEdit() => models.AfterUnrelatedEdit();

    [Benchmark(Description = "Binding the models' attributes alone (floor)")]
    [BenchmarkCategory("After an unrelated edit")]
    public GeneratorDriver FloorAfterUnrelatedEdit() => floor.AfterUnrelatedEdit();

    /// <summary>
    /// The same six measurements in interleaved rounds (no BenchmarkDotNet): each round runs every benchmark once, in
    /// turn, so that a load that comes and goes on a shared machine falls on all of them alike. Prints the medians and
    /// the median of each round's ratio to System.Text.Json's run of the same round and category.
    /// </summary>
    public static void RunInterleaved(int rounds)
    {
        var bench = new GeneratorVsJsonBenchmarks();
        bench.Setup();
        var names = new[] { "System.Text.Json, 100 types", "ModelDsl, 100 models", "Binding the attributes alone (floor)" };
        var runs = new (string Category, Func<GeneratorDriver>[] Run)[]
        {
            ("Full run", new Func<GeneratorDriver>[] { bench.JsonFullRun, bench.ModelDslFullRun, bench.FloorFullRun }),
            ("After an unrelated edit", new Func<GeneratorDriver>[] { bench.JsonAfterUnrelatedEdit, bench.ModelDslAfterUnrelatedEdit, bench.FloorAfterUnrelatedEdit }),
        };
        var times = new double[runs.Length, names.Length, rounds];
        var watch = new System.Diagnostics.Stopwatch();
        for (int round = 0; round < rounds; round++)
        {
            for (int c = 0; c < runs.Length; c++)
            {
                // The order rotates by round, and each run starts from a collected heap (as BenchmarkDotNet does per
                // iteration), so no generator pays for the garbage of the one before it.
                for (int i = 0; i < names.Length; i++)
                {
                    int b = (i + round) % names.Length;
                    GC.Collect();
                    GC.WaitForPendingFinalizers();
                    GC.Collect();
                    watch.Restart();
                    runs[c].Run[b]();
                    times[c, b, round] = watch.Elapsed.TotalMilliseconds;
                }
            }
        }
        // GENERATOR_VS_JSON_BY_POSITION=1: the full-run medians by position in the round as well (see docs/benchmarks.md,
        // "Allocation in the emitter": a run's time depends on which benchmark ran before it).
        if (Environment.GetEnvironmentVariable("GENERATOR_VS_JSON_BY_POSITION") == "1")
        {
            for (int start = 0; start < names.Length; start++)
            {
                var order = string.Join(", ", Enumerable.Range(0, names.Length).Select(i => names[(i + start) % names.Length]));
                var medians = Enumerable.Range(0, names.Length).Select(b =>
                {
                    var ms = Enumerable.Range(0, rounds).Where(r => r % names.Length == start).Select(r => times[0, b, r]).OrderBy(x => x).ToArray();
                    return ms.Length == 0 ? "-" : ms[ms.Length / 2].ToString("F1");
                });
                Console.WriteLine($"Full run, in the order {order}: median ms (System.Text.Json / ModelDsl / floor) {string.Join(" / ", medians)}");
            }
        }
        Console.WriteLine($"{rounds} interleaved rounds; ratio = median over rounds of (time / System.Text.Json's in the same round)");
        Console.WriteLine($"{"category",-24} {"benchmark",-38} {"median ms",10} {"ratio",7} {"ratio IQR",13}");
        for (int c = 0; c < runs.Length; c++)
        {
            for (int b = 0; b < names.Length; b++)
            {
                var ms = Enumerable.Range(0, rounds).Select(r => times[c, b, r]).OrderBy(x => x).ToArray();
                var ratios = Enumerable.Range(0, rounds).Select(r => times[c, b, r] / times[c, 0, r]).OrderBy(x => x).ToArray();
                Console.WriteLine($"{runs[c].Category,-24} {names[b],-38} {ms[rounds / 2],10:F2} {ratios[rounds / 2],7:F2} {ratios[rounds / 4],6:F2}-{ratios[3 * rounds / 4]:F2}");
            }
        }
    }

    /// <summary>ModelDsl's full run and nothing else, repeated for <paramref name="seconds"/> (after the warm-up), for a profiler.</summary>
    public static void RunModelDslFullRuns(int seconds)
    {
        var bench = new GeneratorVsJsonBenchmarks();
        bench.Setup();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var times = new List<double>();
        while (watch.Elapsed < TimeSpan.FromSeconds(seconds))
        {
            var start = watch.Elapsed;
            bench.ModelDslFullRun();
            times.Add((watch.Elapsed - start).TotalMilliseconds);
        }
        times.Sort();
        Console.WriteLine($"{times.Count} full runs of ModelDsl over 100 models: median {times[times.Count / 2]:F2} ms");
        foreach (var (name, run) in new (string, Func<GeneratorDriver>)[] { ("System.Text.Json", bench.JsonFullRun), ("ModelDsl", bench.ModelDslFullRun), ("floor", bench.FloorFullRun) })
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            int gcs = GC.CollectionCount(0);
            for (int i = 0; i < 20; i++) run();
            double megabytes = (GC.GetAllocatedBytesForCurrentThread() - before) / 20 / 1e6, collections = (GC.CollectionCount(0) - gcs) / 20.0;
            var generated = run().GetRunResult().GeneratedTrees;
            Console.WriteLine($"{name}: {megabytes:F1} MB allocated per full run, {collections:F1} gen-0 collections; " +
                $"{generated.Length} files, {generated.Sum(t => t.Length) / 1e3:F0} K chars generated");
        }
    }

    /// <summary>
    /// The floor under any generator that reads these models: find the 100 classes as ModelGenerator does and have
    /// Roslyn bind every attribute on their members (what reading a layer's arguments needs), nothing else.
    /// </summary>
    private sealed class BindModelAttributesOnly : IIncrementalGenerator
    {
        public void Initialize(IncrementalGeneratorInitializationContext context)
        {
            var names = context.SyntaxProvider.ForAttributeWithMetadataName("ModelDsl.ModelAttribute",
                static (node, _) => node is Microsoft.CodeAnalysis.CSharp.Syntax.TypeDeclarationSyntax, static (ctx, _) => ((INamedTypeSymbol)ctx.TargetSymbol).GetMembers().Sum(m => m.GetAttributes().Sum(a => a.ConstructorArguments.Length + a.NamedArguments.Length)));
            context.RegisterSourceOutput(names, static (_, _) => { });
        }
    }

    /// <summary>One generator with its compilation, a warm driver, and the unrelated file in its two versions.</summary>
    private sealed class Side
    {
        private readonly IIncrementalGenerator generator;
        private readonly CSharpCompilation compilation;
        private readonly SyntaxTree unrelated;
        private readonly SyntaxTree unrelatedEdited;
        private GeneratorDriver warm;
        private Compilation current;
        private bool edited;

        public Side(IIncrementalGenerator generator, IEnumerable<string> sources, MetadataReference[] references)
        {
            this.generator = generator;
            var trees = sources.Select((s, i) => CSharpSyntaxTree.ParseText(s, ParseOptions, $"File{i:00}.cs", Encoding.UTF8)).ToList();
            unrelated = CSharpSyntaxTree.ParseText(Unrelated(1), ParseOptions, "Unrelated.cs", Encoding.UTF8);
            unrelatedEdited = CSharpSyntaxTree.ParseText(Unrelated(2), ParseOptions, "Unrelated.cs", Encoding.UTF8);
            trees.Add(unrelated);
            compilation = CSharpCompilation.Create("Bench", trees, references,
                new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
            warm = NewDriver().RunGenerators(compilation);
            current = compilation;
            for (int i = 0; i < 4; i++) AfterUnrelatedEdit();
        }

        public GeneratorDriver FullRun() => NewDriver().RunGenerators(compilation.Clone());

        public GeneratorDriver AfterUnrelatedEdit()
        {
            var (from, to) = edited ? (unrelatedEdited, unrelated) : (unrelated, unrelatedEdited);
            current = current.ReplaceSyntaxTree(from, to);
            edited = !edited;
            warm = warm.RunGenerators(current);
            return warm;
        }

        public void Verify(int minFiles, string name)
        {
            var driver = CSharpGeneratorDriver.Create(new[] { generator.AsSourceGenerator() }, parseOptions: ParseOptions,
                    driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true))
                .RunGeneratorsAndUpdateCompilation(compilation, out var output, out var diagnostics);
            var run = driver.GetRunResult();
            Check(run.Results.Single().Exception is null, name + " threw: " + run.Results.Single().Exception);
            Check(run.GeneratedTrees.Length >= minFiles, $"{name}: expected at least {minFiles} generated files, got {run.GeneratedTrees.Length}");
            var errors = diagnostics.Concat(output.GetDiagnostics()).Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
            Check(errors.Count == 0, $"{name}: errors in the generated compilation:\n" + string.Join("\n", errors.Take(10)));

            var after = driver.RunGenerators(compilation.ReplaceSyntaxTree(unrelated, unrelatedEdited)).GetRunResult().Results.Single();
            var changed = after.TrackedOutputSteps.SelectMany(s => s.Value).SelectMany(s => s.Outputs)
                .Count(o => o.Reason is IncrementalStepRunReason.New or IncrementalStepRunReason.Modified);
            Check(changed == 0, $"{name}: {changed} outputs changed after an edit to an unrelated file");
        }

        private GeneratorDriver NewDriver() =>
            CSharpGeneratorDriver.Create(new[] { generator.AsSourceGenerator() }, parseOptions: ParseOptions, driverOptions: DriverOptions);
    }

    /// <summary>The System.Text.Json generator of the SDK's reference pack (the one builds run).</summary>
    private static IIncrementalGenerator JsonGenerator()
    {
        var packs = Path.Combine(Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(typeof(object).Assembly.Location))))!, "packs", "Microsoft.NETCore.App.Ref");
        var path = Directory.Exists(packs)
            ? Directory.GetDirectories(packs).OrderByDescending(d => Version.TryParse(Path.GetFileName(d).Split('-')[0], out var v) ? v : new Version())
                .Select(d => Path.Combine(d, "analyzers", "dotnet", "cs", "System.Text.Json.SourceGeneration.dll")).FirstOrDefault(File.Exists)
            : null;
        Check(path is not null, "System.Text.Json.SourceGeneration.dll not found under " + packs);
        var type = Assembly.LoadFrom(path!).GetTypes().Single(t => typeof(IIncrementalGenerator).IsAssignableFrom(t) && !t.IsAbstract);
        return (IIncrementalGenerator)Activator.CreateInstance(type)!;
    }

    private static string JsonSource(int file)
    {
        var sb = new StringBuilder();
        sb.Append("using System.Collections.Generic;\nusing System.Text.Json.Serialization;\n\n");
        sb.Append($"namespace Bench.Json{file:00};\n\n");
        for (int i = file * PerFile; i < (file + 1) * PerFile; i++)
        {
            sb.Append($"/// <summary>Benchmark type {i}.</summary>\npublic class Poco{i:000}\n{{\n");
            int properties = 3 + i % 6;
            for (int p = 0; p < properties; p++)
            {
                string type = ((i + p) % 5) switch
                {
                    0 => "int",
                    1 => "string?",
                    2 => "double",
                    3 => "List<long>?",
                    _ => i > file * PerFile ? $"Poco{i - 1:000}?" : "bool",
                };
                sb.Append($"    public {type} P{p} {{ get; set; }}\n");
            }
            sb.Append("}\n\n");
        }
        sb.Append($"/// <summary>The serialization context of file {file}.</summary>\n");
        for (int i = file * PerFile; i < (file + 1) * PerFile; i++)
            sb.Append($"[JsonSerializable(typeof(Poco{i:000}))]\n");
        sb.Append($"public partial class JsonContext{file:00} : JsonSerializerContext\n{{\n}}\n");
        return sb.ToString();
    }

    private static string Unrelated(int version) => $$"""
        namespace Bench.Other;

        /// <summary>A file neither generator reads; the benchmark edits its method body.</summary>
        public static class Arithmetic
        {
            public static int Scale(int x) => x * {{version}};
        }
        """;

    private static MetadataReference[] References(params string[] extra) =>
        ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!)
            .Split(Path.PathSeparator)
            .Where(p => Path.GetFileName(p).StartsWith("System.", StringComparison.Ordinal) || Path.GetFileName(p) is "netstandard.dll" or "mscorlib.dll")
            .Concat(extra)
            .Distinct()
            .Select(p => (MetadataReference)MetadataReference.CreateFromFile(p))
            .ToArray();

    private static void Check(bool condition, string message)
    {
        if (!condition) throw new InvalidOperationException("GeneratorVsJsonBenchmarks setup: " + message);
    }
}
