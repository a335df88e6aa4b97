using System.Collections.Immutable;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Testing;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Testing;
using ModelDsl.CodeFixes;
using ModelDsl.Generators.Diagnostics;

namespace ModelDsl.Generators.Tests;

/// <summary>
/// The IDE fixes, run by Roslyn's code-fix test framework: the diagnostic must be where the markup says, the fix must
/// produce exactly the expected source, and the fixed source must compile without any ModelDsl diagnostic.
/// </summary>
public sealed class CodeFixTests
{
    private const string Header = "using ModelDsl;\nusing TorchSharp.Modules;\n\n";
    private const string Train = "[Train(Loss.CrossEntropy, Optimizer.Adam)]\n";

    [Fact]
    public Task LinearInFeaturesMismatch_UseTheInferredSize_WritesIt() => Verify(
        Mlp("[Linear({|MD0101:64|}, 10)]"), Mlp("[Linear(32, 10)]"), "MD0101.Inferred");

    [Fact]
    public Task LinearInFeaturesMismatch_RemoveTheExplicitSize_LeavesTheLazyForm() => Verify(
        Mlp("[Linear({|MD0101:64|}, 10)]"), Mlp("[Linear(10)]"), "MD0101.Remove");

    [Fact]
    public Task BatchNormMismatch_RemoveTheExplicitSize_DropsTheArgumentList() => Verify(
        Cnn("[BatchNorm2d({|MD0101:8|})]"), Cnn("[BatchNorm2d]"), "MD0101.Remove");

    [Fact]
    public Task ConvInChannelsMismatch_UseTheInferredSize_KeepsTheOtherArguments() => Verify(
        Cnn("[BatchNorm2d]", "[Conv2d({|MD0101:3|}, 4, 3, Padding = 1)]"), Cnn("[BatchNorm2d]", "[Conv2d(16, 4, 3, Padding = 1)]"), "MD0101.Inferred");

    [Theory]
    [InlineData("{|MD0301:1.5|}", "1.0")]   // fraction above 1: all of it
    [InlineData("{|MD0301:-0.25|}", "0.0")] // negative fraction: none
    [InlineData("{|MD0301:-3|}", "0")]      // negative count
    [InlineData("{|MD0301:600|}", "512")]   // more weights than Hidden has: 16 · 32
    public Task AmountOutOfRange_IsClampedIntoRange(string amount, string clamped) => Verify(
        Pruned($"[Prune(PruneMethod.L1Unstructured, {amount}, Targets = new[] {{ nameof(Hidden) }})]"),
        Pruned($"[Prune(PruneMethod.L1Unstructured, {clamped}, Targets = new[] {{ nameof(Hidden) }})]"), "MD0301");

    [Fact]
    public Task PruneAfterQuantize_MovesQuantizeLast() => Verify(
        Pruned("[Quantize(QuantizeMode.DynamicInt8)]\n[{|MD0304:Prune(PruneMethod.L1Unstructured, 0.5, Targets = new[] { nameof(Hidden) })|}]"),
        Pruned("[Prune(PruneMethod.L1Unstructured, 0.5, Targets = new[] { nameof(Hidden) })]\n[Quantize(QuantizeMode.DynamicInt8)]"), "MD0304");

    [Fact]
    public Task PruneAfterQuantize_InOneAttributeList_MovesQuantizeIntoItsOwnListAfterThePrunes() => Verify(
        Pruned("[Quantize(QuantizeMode.DynamicInt8), {|MD0304:Prune(PruneMethod.L1Unstructured, 0.5, Targets = new[] { nameof(Hidden) })|}]\n[{|MD0304:Prune(PruneMethod.L1Unstructured, 0.25, Targets = new[] { nameof(Output) })|}]"),
        Pruned("[Prune(PruneMethod.L1Unstructured, 0.5, Targets = new[] { nameof(Hidden) })]\n[Prune(PruneMethod.L1Unstructured, 0.25, Targets = new[] { nameof(Output) })]\n[Quantize(QuantizeMode.DynamicInt8)]"), "MD0304");

    [Fact]
    public Task LayerCalledThroughForward_BecomesCall() => Verify(
        Residual("", "Out.{|MD0017:forward|}(x + Act.{|MD0017:forward|}(this.Hidden.{|MD0017:forward|}(x)))"),
        Residual("", "Out.call(x + Act.call(this.Hidden.call(x)))"), "MD0017");

    [Fact]
    public Task LinearThatQuantizeReplaces_RunsThroughItsSlot() => Verify(
        Residual("[Quantize(QuantizeMode.DynamicInt8)]\n", "{|MD0016:Out|}.call(x + Act.call({|MD0016:this.Hidden|}.call(x)))"),
        Residual("[Quantize(QuantizeMode.DynamicInt8)]\n", "GetLayer(nameof(Out)).call(x + Act.call(GetLayer(nameof(Hidden)).call(x)))"), "MD0016");

    [Fact]
    public void FixableIds_AreDiagnosticsTheGeneratorHas()
    {
        var ids = DiagnosticDescriptors.All.Select(d => d.Id).ToHashSet();
        Assert.All(new ModelDslCodeFixProvider().FixableDiagnosticIds, id => Assert.Contains(id, ids));
    }

    private static string Mlp(string output) => Header + $$"""
        [Model(Input = "B, 16")]
        public partial class Mlp
        {
            [Linear(32)] public partial Linear Hidden { get; }
            [ReLU] public partial ReLU Act { get; }
            {{output}} public partial Linear Output { get; }
        }
        """;

    private static string Cnn(string norm, string conv = "[Conv2d(4, 3)]") => Header + $$"""
        [Model(Input = "B, 1, 8, 8")]
        public partial class Cnn
        {
            [Conv2d(16, 3, Padding = 1)] public partial Conv2d C1 { get; }
            {{norm}} public partial BatchNorm2d Bn { get; }
            {{conv}} public partial Conv2d C2 { get; }
        }
        """;

    private static string Pruned(string passes) => Header + "[Model(Input = \"B, 16\")]\n" + Train + passes + "\n" + """
        public partial class Net
        {
            [Linear(32)] public partial Linear Hidden { get; }
            [ReLU] public partial ReLU Act { get; }
            [Linear(10)] public partial Linear Output { get; }
        }
        """;

    private static string Residual(string passes, string body) => Header + "using TorchSharp;\n\n[Model(Input = \"B, 8\")]\n" + Train + passes + $$"""
        public partial class {|MD0013:Net|}
        {
            [Linear(8, 8)] public partial Linear Hidden { get; }
            [ReLU] public partial ReLU Act { get; }
            [Linear(8, 3)] public partial Linear Out { get; }
            public override torch.Tensor forward(torch.Tensor x) => {{body}};
        }
        """;

    private static async Task Verify(string source, string fixedSource, string equivalenceKey)
    {
        var test = new CSharpCodeFixTest<GeneratorDiagnosticsAnalyzer, ModelDslCodeFixProvider, DefaultVerifier>
        {
            TestCode = source,
            FixedCode = fixedSource,
            CodeActionEquivalenceKey = equivalenceKey,
            // The partial layer properties are implemented by the generated source, which this framework does not
            // add: the compiler's own errors about them are not what is tested here.
            CompilerDiagnostics = CompilerDiagnostics.None,
            // The references of the generator tests (this runtime's System.*, ModelDsl, TorchSharp), not a download.
            ReferenceAssemblies = new ReferenceAssemblies("net10.0"),
        };
        test.TestState.AdditionalReferences.AddRange(GeneratorHarness.References);
        test.FixedState.AdditionalReferences.AddRange(GeneratorHarness.References);
        test.SolutionTransforms.Add((solution, projectId) =>
            solution.WithProjectParseOptions(projectId, GeneratorHarness.ParseOptions));
        await test.RunAsync();
    }
}

/// <summary>
/// Reports what the generator reports, for the code-fix framework, which asks analyzers for diagnostics. The IDE offers
/// fixes for a generator's diagnostics directly (Roslyn 4.7 and later), so this adapter exists only in the tests.
/// </summary>
// RS1036/RS1038/RS1041 guard analyzers that ship; this one lives in a test assembly that the compiler never loads.
#pragma warning disable RS1036, RS1038, RS1041
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class GeneratorDiagnosticsAnalyzer : DiagnosticAnalyzer
{
    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics { get; } = DiagnosticDescriptors.All.ToImmutableArray();

    public override void Initialize(AnalysisContext context)
    {
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.EnableConcurrentExecution();
        // Per document (a code fix only takes local diagnostics): the generator runs over the whole compilation, and
        // each document gets the diagnostics located in it.
        context.RegisterSemanticModelAction(c =>
        {
            CSharpGeneratorDriver.Create(new[] { new ModelGenerator().AsSourceGenerator() }, parseOptions: GeneratorHarness.ParseOptions)
                .RunGeneratorsAndUpdateCompilation(c.SemanticModel.Compilation, out _, out var diagnostics, c.CancellationToken);
            foreach (var d in diagnostics.Where(d => d.Id.StartsWith("MD", StringComparison.Ordinal) && d.Location.SourceTree == c.SemanticModel.SyntaxTree))
                c.ReportDiagnostic(d);
        });
    }
}
#pragma warning restore RS1036, RS1038, RS1041
