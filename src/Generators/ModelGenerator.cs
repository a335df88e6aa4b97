using Microsoft.CodeAnalysis.Text;
using ModelDsl.Generators.Emit;
using ModelDsl.Generators.Parsing;

namespace ModelDsl.Generators
{
    /// <summary>
    /// Compiles [Model] classes into TorchSharp modules. This class only wires the pipeline:
    /// parse (<see cref="ModelParser"/>) → equatable <see cref="ModelSpec"/> → emit (<see cref="ModelEmitter"/>);
    /// diagnostics travel on their own output so that source is produced from the model alone.
    /// </summary>
    [Generator(LanguageNames.CSharp)]
    public sealed class ModelGenerator : IIncrementalGenerator
    {
        /// <inheritdoc />
        public void Initialize(IncrementalGeneratorInitializationContext context)
        {
            // Two stages, so that an unchanged model is not bound again: Roslyn re-runs this transform for every
            // [Model] class whenever the compilation changes, so it only reads what the parse depends on, from syntax
            // (ModelSource); the parse runs when that changed, and reads layer attributes from syntax where it can
            // (LayerAttributeSyntax), binding a member's attributes only where syntax cannot settle them.
            var sources = context.SyntaxProvider
                .ForAttributeWithMetadataName(
                    ModelParser.ModelAttributeName,
                    static (node, _) => node is TypeDeclarationSyntax,
                    static (ctx, ct) => ModelSource.From(ctx, ct))
                .WithTrackingName(TrackingNames.Sources);
            var results = sources
                .Select(static (source, ct) => ParseSafely(source, ct))
                .WithTrackingName(TrackingNames.Parse);

            var models = results
                .Select(static (r, _) => r.Model)
                .Where(static m => m is not null)
                .WithTrackingName(TrackingNames.Models);

            var diagnostics = results
                .Select(static (r, _) => r.Diagnostics)
                .WithTrackingName(TrackingNames.Diagnostics);

            // [Train] without [Model]: the only case the model pipeline cannot see. Its result may carry a stubs-only
            // model that completes the class, so that MD0410 is the build's one complaint.
            var orphanResults = context.SyntaxProvider
                .ForAttributeWithMetadataName(
                    TrainParser.TrainAttributeName,
                    static (node, _) => node is TypeDeclarationSyntax,
                    static (ctx, ct) => ctx.TargetSymbol.GetAttributes().Any(a => a.AttributeClass?.ToDisplayString() == ModelParser.ModelAttributeName)
                        ? null
                        : ParseOrphanSafely(ctx, ct))
                .Where(static r => r is not null)
                .WithTrackingName(TrackingNames.OrphanTrain);
            var orphanTrains = orphanResults.Select(static (r, _) => r!.Diagnostics);
            var orphanStubs = orphanResults.Select(static (r, _) => r!.Model).Where(static m => m is not null);
            context.RegisterSourceOutput(orphanStubs, static (spc, model) => EmitSafely(spc, model!));

            // [Loss] methods are checked on their own (signature, a second one, no [Train]), wherever they are.
            var lossMethods = context.SyntaxProvider
                .ForAttributeWithMetadataName(
                    LossMethodParser.LossAttributeName,
                    static (node, _) => node is MethodDeclarationSyntax,
                    static (ctx, ct) => ctx.TargetSymbol is IMethodSymbol method
                        ? LossMethodParser.Check(method, ctx.Attributes.FirstOrDefault(), ct)
                        : EquatableArray<DiagnosticInfo>.Empty)
                .WithTrackingName(TrackingNames.LossMethods);

            context.RegisterSourceOutput(models, static (spc, model) => EmitSafely(spc, model!));

            // Load and Predict call ModelDsl.Runtime, which a model without [Train] need not reference: they are emitted
            // where the compilation has it. The compilation is reduced to that one fact, so edits elsewhere stay cached.
            var runtimeReferenced = context.CompilationProvider
                .Select(static (c, _) => c.GetTypeByMetadataName(InferenceEmitter.RuntimeMarker) is not null)
                .WithTrackingName(TrackingNames.RuntimeReferenced);
            context.RegisterSourceOutput(models.Combine(runtimeReferenced), static (spc, pair) =>
            {
                if (pair.Right) EmitInferenceSafely(spc, pair.Left!);
            });
            // Diagnostics are re-attached to their syntax trees so that #pragma warning disable and per-file
            // .editorconfig severities apply to them. Only this cheap reporting step sees every compilation; the
            // parse and the emitted source stay cached.
            context.RegisterSourceOutput(diagnostics.Combine(context.CompilationProvider), static (spc, pair) => Report(spc, pair.Left, pair.Right));
            context.RegisterSourceOutput(orphanTrains.Combine(context.CompilationProvider), static (spc, pair) => Report(spc, pair.Left, pair.Right));
            context.RegisterSourceOutput(lossMethods.Combine(context.CompilationProvider), static (spc, pair) => Report(spc, pair.Left, pair.Right));
        }

        // The generator must never throw (a throw is CS8785 and takes every other output with it). Cancellation
        // is the one exception that has to propagate.
        private static ModelResult ParseSafely(ModelSource? source, System.Threading.CancellationToken ct)
        {
            if (source is null) return new ModelResult(null, EquatableArray<DiagnosticInfo>.Empty);
            INamedTypeSymbol? type = null;
            try
            {
                // The source is this run's whenever this step runs (see ModelSource), so its compilation is alive.
                if (!source.TryGet(out type, out var compilation))
                    throw new InvalidOperationException("the compilation of this run was no longer reachable");
                return ModelParser.Parse(type, source.ModelAttribute(type), compilation, ct);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                var tree = type?.DeclaringSyntaxReferences.FirstOrDefault(r => r.SyntaxTree.FilePath == source.TargetPath)?.SyntaxTree;
                var location = tree is null ? null : LocationInfo.From(Location.Create(tree, source.TargetSpan));
                var info = new DiagnosticInfo(DiagnosticDescriptors.UnsupportedClass.Id, location,
                    new[] { source.Name, "the ModelDsl generator failed on it (" + e.GetType().Name + ": " + e.Message + "); please report this" }.ToEquatableArray());
                return new ModelResult(null, new[] { info }.ToEquatableArray());
            }
        }

        private static ModelResult ParseOrphanSafely(GeneratorAttributeSyntaxContext context, System.Threading.CancellationToken ct)
        {
            try
            {
                return ModelParser.ParseOrphanTrain(context, ct);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // The stubs are a courtesy; MD0410 itself must survive.
                return new ModelResult(null, new[] { new DiagnosticInfo(DiagnosticDescriptors.TrainWithoutModel.Id,
                    LocationInfo.From(context.TargetNode.GetLocation()), new[] { context.TargetSymbol.Name }.ToEquatableArray()) }.ToEquatableArray());
            }
        }

        private static void Report(SourceProductionContext context, EquatableArray<DiagnosticInfo> diagnostics, Compilation compilation)
        {
            foreach (var d in diagnostics)
            {
                var descriptor = DiagnosticDescriptors.Get(d.Id);
                var (arguments, properties) = FixValue.Split(descriptor, d.Arguments.AsImmutableArray());
                context.ReportDiagnostic(Diagnostic.Create(descriptor, ToLocation(d.Location, compilation), properties, arguments));
            }
        }

        private static Location? ToLocation(LocationInfo? info, Compilation compilation)
        {
            if (info is null) return null;
            foreach (var tree in compilation.SyntaxTrees)
            {
                if (tree.FilePath == info.FilePath && info.Start + info.Length <= tree.Length)
                    return Location.Create(tree, new TextSpan(info.Start, info.Length));
            }
            return info.ToLocation();
        }

        private static void EmitSafely(SourceProductionContext context, ModelSpec model)
        {
            string? source = null, trainSource = null, stubSource = null;
            try
            {
                // StubsOnly: a class that cannot take the Module<Tensor, Tensor> skeleton (another base class).
                if (!model.StubsOnly) source = ModelEmitter.Emit(model);
                if (model.TrainDeclared) trainSource = TrainEmitter.Emit(model);
                if (model.Stubs.Count > 0) stubSource = PartialStubEmitter.Emit(model);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.UnsupportedClass, null, model.Name,
                    "the ModelDsl emitter failed on it (" + e.GetType().Name + ": " + e.Message + "); please report this"));
                return;
            }
            if (source is not null)
                context.AddSource(ModelEmitter.HintName(model), SourceText.From(source, System.Text.Encoding.UTF8));
            if (trainSource is not null)
                context.AddSource(TrainEmitter.HintName(model), SourceText.From(trainSource, System.Text.Encoding.UTF8));
            if (stubSource is not null)
                context.AddSource(PartialStubEmitter.HintName(model), SourceText.From(stubSource, System.Text.Encoding.UTF8));
        }
        private static void EmitInferenceSafely(SourceProductionContext context, ModelSpec model)
        {
            string source;
            try
            {
                source = InferenceEmitter.Emit(model);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.UnsupportedClass, null, model.Name,
                    "the ModelDsl emitter failed on it (" + e.GetType().Name + ": " + e.Message + "); please report this"));
                return;
            }
            context.AddSource(InferenceEmitter.HintName(model), SourceText.From(source, System.Text.Encoding.UTF8));
        }
    }

    /// <summary>Tracking names of the pipeline steps, for incremental-caching tests.</summary>
    public static class TrackingNames
    {
        /// <summary>What each [Model] class's parse reads, from syntax (re-run on every compilation; cheap).</summary>
        public const string Sources = "ModelDsl.Sources";
        /// <summary>The [Model] classes, parsed and checked (only when their <see cref="Sources"/> changed).</summary>
        public const string Parse = "ModelDsl.Parse";
        /// <summary>The models to emit.</summary>
        public const string Models = "ModelDsl.Models";
        /// <summary>The diagnostics of each model.</summary>
        public const string Diagnostics = "ModelDsl.Diagnostics";
        /// <summary>[Train] attributes on classes without [Model].</summary>
        public const string OrphanTrain = "ModelDsl.OrphanTrain";
        /// <summary>The checks of each [Loss] method.</summary>
        public const string LossMethods = "ModelDsl.LossMethods";
        /// <summary>Whether the compilation references ModelDsl.Runtime (Load and Predict are emitted only then).</summary>
        public const string RuntimeReferenced = "ModelDsl.RuntimeReferenced";
    }

    internal static class GeneratorInfo
    {
        public const string Name = "ModelDsl.Generators";
        /// <summary>The generator assembly's version (Directory.Build.props' Version): generated headers cannot drift from the package.</summary>
        public static readonly string Version = Format(typeof(GeneratorInfo).Assembly.GetName().Version);

        /// <summary>The attribute every generated member carries (the analyzers' and coverage tools' signal to skip it).</summary>
        public static readonly string Attribute = $"[global::System.CodeDom.Compiler.GeneratedCode(\"{Name}\", \"{Version}\")]";

        private static string Format(System.Version? v) => v is null ? "0.0.0" : $"{v.Major}.{v.Minor}.{System.Math.Max(0, v.Build)}";
    }
}
