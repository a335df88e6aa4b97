using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using ModelDsl.Generators;

namespace ModelDsl.Testing
{
    /// <summary>
    /// Renders what the ModelDsl generator writes for a model, as text for a snapshot test: each generated file, the
    /// ModelDsl diagnostics, and the model's compile-time <c>Summary</c>. The generator runs over the model's own source
    /// file with the references of the running test (the test project references the model's project, so ModelDsl and
    /// TorchSharp are there), exactly as the compiler runs it in a build.
    /// </summary>
    /// <example>
    /// <code>
    /// [Fact]
    /// public void Classifier_MatchesTheApprovedSnapshot() =>
    ///     ApprovedFile.Verify(ModelSnapshot.Render&lt;Classifier&gt;("../MyApp/Classifier.cs"), "Classifier");
    /// </code>
    /// </example>
    public static class ModelSnapshot
    {
        /// <summary>
        /// Renders the generated source of <typeparamref name="TModel"/>, declared in <paramref name="sourcePath"/>,
        /// followed by its <c>Summary</c> as the compiled model reports it.
        /// </summary>
        /// <param name="sourcePath">The file that declares the model; relative paths are resolved against the calling test's file.</param>
        /// <param name="additionalSourcePaths">Other files the model needs (models it composes, partial declarations elsewhere).</param>
        /// <param name="callerFilePath">Filled in by the compiler.</param>
        public static string Render<TModel>(string sourcePath, IEnumerable<string>? additionalSourcePaths = null, [CallerFilePath] string callerFilePath = "")
        {
            var paths = new[] { sourcePath }.Concat(additionalSourcePaths ?? Array.Empty<string>()).Select(p => Resolve(p, callerFilePath));
            var type = typeof(TModel);
            string prefix = (type.Namespace is null ? "" : type.Namespace + ".") + NestedName(type) + ".";
            var text = new StringBuilder(RenderCore(paths.Select(p => (p, File.ReadAllText(p))), hint => hint.StartsWith(prefix, StringComparison.Ordinal)));
            var summary = type.GetProperty("Summary", System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)?.GetValue(null)
                ?? throw new ArgumentException($"{type.FullName} has no generated Summary: is it a [Model] class compiled with the ModelDsl generator?", nameof(TModel));
            text.Append("// ==== Summary (from the compiled model) ====\n").Append(Normalize(summary.ToString() ?? "")).Append('\n');
            return text.ToString();
        }

        /// <summary>Renders everything the generator writes for the models declared in <paramref name="source"/>, with its diagnostics.</summary>
        /// <param name="source">C# source declaring one or more <c>[Model]</c> classes (with its usings).</param>
        public static string Render(string source) => RenderCore(new[] { ("Model.cs", source) }, _ => true);

        private static string RenderCore(IEnumerable<(string Path, string Text)> sources, Func<string, bool> includeHint)
        {
            var parse = new CSharpParseOptions(LanguageVersion.Preview);
            var trees = sources.Select(s => CSharpSyntaxTree.ParseText(s.Text, parse, s.Path)).ToArray();
            var compilation = CSharpCompilation.Create("ModelDslSnapshot", trees, References.Value,
                new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
            var driver = CSharpGeneratorDriver.Create(new[] { new ModelGenerator().AsSourceGenerator() }, parseOptions: parse);
            var result = driver.RunGenerators(compilation).GetRunResult();

            var text = new StringBuilder();
            foreach (var generated in result.Results.SelectMany(r => r.GeneratedSources).Where(g => includeHint(g.HintName)).OrderBy(g => g.HintName, StringComparer.Ordinal))
                text.Append("// ==== ").Append(generated.HintName).Append(" ====\n").Append(Normalize(generated.SourceText.ToString())).Append('\n');
            var diagnostics = result.Diagnostics.Where(d => d.Id.StartsWith("MD", StringComparison.Ordinal)).OrderBy(d => d.Location.SourceSpan.Start).ToList();
            if (diagnostics.Count > 0)
            {
                text.Append("// ==== Diagnostics ====\n");
                foreach (var d in diagnostics)
                {
                    var span = d.Location.GetLineSpan();
                    text.Append($"{Path.GetFileName(span.Path)}({span.StartLinePosition.Line + 1},{span.StartLinePosition.Character + 1}): {d.Severity.ToString().ToLowerInvariant()} {d.Id}: {d.GetMessage(System.Globalization.CultureInfo.InvariantCulture)}\n");
                }
            }
            if (text.Length == 0) throw new ArgumentException("the generator wrote nothing for these sources: do they declare the [Model] class?");
            return text.ToString();
        }

        // The test's own references: its project references the model's, so ModelDsl, the runtime and TorchSharp are here.
        private static readonly Lazy<MetadataReference[]> References = new(() =>
            ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
                .Where(p => p.Length > 0 && File.Exists(p))
                .Select(p => (MetadataReference)MetadataReference.CreateFromFile(p))
                .ToArray());

        private static string Resolve(string path, string callerFilePath) =>
            Path.IsPathRooted(path) || callerFilePath.Length == 0 ? Path.GetFullPath(path) : Path.GetFullPath(Path.Combine(Path.GetDirectoryName(callerFilePath)!, path));

        private static string NestedName(Type type) => type.DeclaringType is null ? type.Name : NestedName(type.DeclaringType) + "." + type.Name;

        // Line endings vary with the checkout; a snapshot should not.
        private static string Normalize(string text) => text.Replace("\r\n", "\n").TrimEnd('\n');
    }
}
