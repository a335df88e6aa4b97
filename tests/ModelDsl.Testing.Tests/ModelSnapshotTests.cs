using System.IO;
using ModelDsl.Testing.Tests.Models;

namespace ModelDsl.Testing.Tests;

/// <summary>The example of the docs: a user's snapshot test of a model's generated code, and the helper's behaviour.</summary>
public sealed class ModelSnapshotTests
{
    /// <summary>What a user writes: the generated source and summary of their model, pinned by an approved file.</summary>
    [Fact]
    public void Classifier_MatchesTheApprovedSnapshot() =>
        ApprovedFile.Verify(ModelSnapshot.Render<Classifier>("Models/Classifier.cs"), "Classifier");

    [Fact]
    public void Render_HoldsTheModelsGeneratedFilesAndTheSummaryOfTheCompiledModel()
    {
        var text = ModelSnapshot.Render<Classifier>("Models/Classifier.cs");
        Assert.Contains("// ==== ModelDsl.Testing.Tests.Models.Classifier.Model.g.cs ====", text);
        Assert.Contains("partial class Classifier", text);
        // Conv: 8·1·3·3 + 8 = 80; Output: 8·4·4 = 128 inputs → 128·10 + 10 = 1,290.
        Assert.Contains("Total params: 1,370", text);
        // The summary section comes from the compiled class, the remarks from the generator run: they must agree.
        int summary = text.IndexOf("// ==== Summary (from the compiled model) ====", StringComparison.Ordinal);
        Assert.True(summary > 0, text);
        Assert.Contains(Classifier.Summary.ToString()!.Replace("\r\n", "\n").TrimEnd('\n'), text[summary..]);
    }

    [Fact]
    public void Render_OfAWrongDeclaration_ListsTheDiagnosticOnItsLine()
    {
        var text = ModelSnapshot.Render("""
            using ModelDsl;
            using TorchSharp.Modules;

            [Model(Input = "B, 8")]
            public partial class Wrong
            {
                [Linear(16)] public partial Linear Hidden { get; }
                [Linear(32, 3)] public partial Linear Output { get; }
            }
            """);
        Assert.Contains("Model.cs(8,13): error MD0101: 'Output': Linear declares in-features = 32, but its input has 16", text);
    }

    [Fact]
    public void Verify_OnADifference_WritesTheReceivedFileAndNamesTheFirstDifferingLine()
    {
        var dir = Directory.CreateTempSubdirectory("modeldsl-approved-").FullName;
        try
        {
            var caller = Path.Combine(dir, "SomeTests.cs");
            File.WriteAllText(Path.Combine(dir, "M.approved.txt"), "a\nb\nc");

            ApprovedFile.Verify("a\nb\nc", "M", caller); // equal: passes, writes nothing
            Assert.False(File.Exists(Path.Combine(dir, "M.received.txt")));

            var error = Assert.Throws<SnapshotMismatchException>(() => ApprovedFile.Verify("a\nB\nc", "M", caller));
            Assert.Contains("at line 2", error.Message);
            Assert.Contains("approved: b", error.Message);
            Assert.Contains("received: B", error.Message);
            Assert.Equal("a\nB\nc", File.ReadAllText(Path.Combine(dir, "M.received.txt")));

            Assert.Throws<SnapshotMismatchException>(() => ApprovedFile.Verify("x", "New", caller)); // nothing approved yet
            Assert.True(File.Exists(Path.Combine(dir, "New.received.txt")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
