using ModelDsl.Runtime.Pruning;

namespace ModelDsl.Generators.Model
{
    // The generator's model: plain, value-equatable data. No ISymbol, SyntaxNode, Compilation or Location
    // survives the transform, so unchanged declarations hit the cache and nothing large stays alive.

    /// <summary>One model class, fully resolved: what the emitter needs and nothing else.</summary>
    internal sealed record ModelSpec(
        string? Namespace,
        EquatableArray<ContainingType> ContainingTypes,
        string Name,
        string Accessibility,
        string InputText,
        string InputType,
        bool HasUserForward,
        bool HasErrors,
        string OutputText,
        EquatableArray<LayerSpec> Layers,
        TrainSpec? Train = null,
        bool TrainDeclared = false,
        ParallelSpec? Parallel = null,
        EquatableArray<PassSpec> Passes = default,
        long ParametersAfterPasses = 0,
        EquatableArray<PartialStub> Stubs = default,
        bool StubsOnly = false,
        bool IsGraph = false,
        string? OutputLayer = null,
        EquatableArray<ModelInputSpec> Inputs = default)
    {
        /// <summary>Whether the model declares several inputs (<c>[Model(Inputs = ...)]</c>); <see cref="InputText"/> is then their packed row.</summary>
        public bool IsMultiInput => Inputs.Count > 1;

        /// <summary>The layer whose output the model returns: <see cref="OutputLayer"/>, else the last.</summary>
        public LayerSpec? Output => OutputLayer is { } name
            ? System.Linq.Enumerable.FirstOrDefault(Layers, l => l.MemberName == name)
            : Layers.Count == 0 ? null : Layers[Layers.Count - 1];

        /// <summary>The deterministic hint name prefix: <c>{Namespace}.{Outer}.{Type}</c>.</summary>
        public string FullName =>
            (Namespace is null ? "" : Namespace + ".") +
            string.Concat(System.Linq.Enumerable.Select(ContainingTypes, t => t.Name + ".")) + Name;
    }

    /// <summary>
    /// One of several model inputs, in declaration order: its name (a source name and <c>forward</c>'s parameter), its
    /// shape as PyTorch prints it, and its per-sample elements (its columns in a packed row).
    /// </summary>
    internal sealed record ModelInputSpec(string Name, string Shape, EquatableArray<long> Sizes)
    {
        /// <summary>Its per-sample elements: its columns in the packed row.</summary>
        public long Elements => Sizes.Aggregate(1L, (n, d) => n * d);
    }

    /// <summary>
    /// The checked [Train] plan: the facts other emitters read, and every plan value in emission order;
    /// <paramref name="LossMethod"/> names the model's valid [Loss] method, if it has one.
    /// </summary>
    internal sealed record TrainSpec(
        string Loss, string Optimizer, int Epochs, int BatchSize, EquatableArray<long> SampleShape, bool IsLanguageModel,
        EquatableArray<PlanValue> Values, string? LossMethod = null)
    {
        /// <summary>SGD's momentum (the memory plan counts its buffer).</summary>
        public double Momentum { get; init; }
        /// <summary>The declared per-rank budget in MiB; 0 when none.</summary>
        public double MemoryBudgetMB { get; init; }
        /// <summary>The compiler's memory plan of the model (MemoryPlanner); null where the shapes are unknown.</summary>
        public MemorySpec? Memory { get; init; }
    }

    /// <summary>
    /// The memory plan's inputs as the compiler found them (the runtime's <c>MemoryModel</c>), and the table of
    /// per-rank bytes by shard level the generated plan shows (its lines, at the declared settings).
    /// </summary>
    internal sealed record MemorySpec(EquatableArray<long> ParameterTensors, long ActivationBytesPerSample, long ActivationBytesPerSampleBf16,
        string Description, EquatableArray<string> Table)
    {
        /// <summary>The activation bytes per sample with Recompute.Blocks (fp32, bf16); null for a model without a block.</summary>
        public (long Fp32, long Bf16)? Recomputed { get; init; }
    }

    /// <summary>The checked values of a [Parallel] attribute: the mode and world size, and every plan value it sets.</summary>
    internal sealed record ParallelSpec(ParallelMode Mode, int WorldSize, EquatableArray<PlanValue> Values);

    /// <summary>
    /// One property of the generated <c>TrainingPlan</c>, as a parser checked it: its name and value (an int, long,
    /// double, bool or string; an enum member's name when <paramref name="EnumType"/> names the enum), with an
    /// optional comment after it and a line before it. The emitter writes every value the same way, so a new plan
    /// setting needs its attribute property, its check in the parser and its <c>TrainingPlan</c> property — no
    /// spec field and no emitter line.
    /// </summary>
    internal sealed record PlanValue(string Name, object Value, string? EnumType = null, string? Comment = null, string? Before = null);

    /// <summary>One checked [Prune] or [Quantize] pass, in declaration order (the runtime's <c>OptimizationPass</c>).</summary>
    internal abstract record PassSpec;

    /// <summary>A checked [Prune] pass (the runtime's <c>PrunePass</c>).</summary>
    internal sealed record PruneSpec(
        PruneMethod Method, PruneAmount Amount, EquatableArray<string> Targets, double N, int Dim, int FineTuneEpochs) : PassSpec;

    /// <summary>A checked [Quantize] pass (the runtime's <c>QuantizePass</c>); CalibrationBatches matters for StaticInt8 only.</summary>
    internal sealed record QuantizeSpec(QuantizeMode Mode, int CalibrationBatches) : PassSpec;

    /// <summary>
    /// A partial property of a model with errors that nothing else implements: the generator implements it with
    /// throwing accessors so the build shows only the MD diagnostic. Modifiers and accessors are as declared
    /// (e.g. <c>public static</c>, <c>get</c>, <c>private set</c>).
    /// </summary>
    internal sealed record PartialStub(string Modifiers, string TypeName, string Name, EquatableArray<string> Accessors);

    /// <summary>A type the model class is nested in: <c>partial class Outer</c>.</summary>
    internal sealed record ContainingType(string Keyword, string Name);

    /// <summary>
    /// One layer: the member it lives on, the TorchSharp module it builds and the shapes around it, and its resolved
    /// sources (layer names, or <c>"input"</c>): a chain layer's is the previous layer (the input for the first), a
    /// graph layer's what <c>From</c> or its merge names.
    /// </summary>
    internal sealed record LayerSpec(
        string MemberName,
        bool IsField,
        string Accessibility,
        string TypeName,
        LayerKind Kind,
        string AttributeText,
        string KindName,
        LayerArgs Args,
        string OutputText,
        long Parameters,
        EquatableArray<string> Sources = default);

    /// <summary>
    /// The constructor arguments of the TorchSharp module, resolved (inferred sizes filled in): the common sizes
    /// (<paramref name="In"/> is the input size inference supplies: in-features, in-channels, num-features or the
    /// normalised shape) and bias, a tied weight, and the kind's own typed record in <paramref name="Own"/> (a
    /// convolution's window, an LSTM's layers and directions).
    /// </summary>
    internal sealed record LayerArgs(long In, long Out, long Count, bool Bias, string? TiedTo = null, KindArguments? Own = null);

    /// <summary>A diagnostic with its location as plain data (file, spans), ready to be re-created.</summary>
    internal sealed record DiagnosticInfo(string Id, LocationInfo? Location, EquatableArray<string> Arguments);

    internal sealed record LocationInfo(string FilePath, int Start, int Length, int StartLine, int StartColumn, int EndLine, int EndColumn)
    {
        public Microsoft.CodeAnalysis.Location ToLocation() =>
            Microsoft.CodeAnalysis.Location.Create(
                FilePath,
                new Microsoft.CodeAnalysis.Text.TextSpan(Start, Length),
                new Microsoft.CodeAnalysis.Text.LinePositionSpan(
                    new Microsoft.CodeAnalysis.Text.LinePosition(StartLine, StartColumn),
                    new Microsoft.CodeAnalysis.Text.LinePosition(EndLine, EndColumn)));

        public static LocationInfo? From(Microsoft.CodeAnalysis.Location? location)
        {
            if (location is null || location.SourceTree is null) return null;
            var line = location.GetLineSpan();
            return new LocationInfo(location.SourceTree.FilePath, location.SourceSpan.Start, location.SourceSpan.Length,
                line.StartLinePosition.Line, line.StartLinePosition.Character, line.EndLinePosition.Line, line.EndLinePosition.Character);
        }
    }

    /// <summary>What one transform step produces: the model to emit (if any) and its diagnostics.</summary>
    internal sealed record ModelResult(ModelSpec? Model, EquatableArray<DiagnosticInfo> Diagnostics);
}
