using System.Collections.Immutable;

namespace ModelDsl.Generators.Parsing
{
    /// <summary>
    /// Turns a [Model] class symbol into a <see cref="ModelSpec"/> and its diagnostics: validates the declaration,
    /// reads the layers in declaration order and runs the shape rules over them.
    /// </summary>
    internal sealed class ModelParser
    {
        internal const string ModelAttributeName = "ModelDsl." + nameof(ModelAttribute);
        private const string LayerAttributeName = "ModelDsl.LayerAttribute";
        private const string BlockAttributeName = "ModelDsl." + nameof(BlockAttribute);

        private readonly List<DiagnosticInfo> _diagnostics = new();
        private readonly CancellationToken _cancellation;
        // Models on the path from the model being compiled down to the one being parsed: a cycle check.
        private readonly ImmutableStack<INamedTypeSymbol> _path;
        // A cycle found at any depth below: the model it returns to, and the chain for the message.
        private INamedTypeSymbol? _cycleTarget;
        private string _cycleChain = "";

        // Composed models already parsed in this run, shared by the whole tree: a model used by several layers (or
        // several composed models) is parsed once. Only cycle-free results are kept (a cycle's report depends on the path).
        private readonly Dictionary<INamedTypeSymbol, Parsed?> _composed;

        private ModelParser(ImmutableStack<INamedTypeSymbol> path, CancellationToken cancellation, Dictionary<INamedTypeSymbol, Parsed?>? composed = null)
        {
            _path = path;
            _cancellation = cancellation;
            _composed = composed ?? new Dictionary<INamedTypeSymbol, Parsed?>(SymbolEqualityComparer.Default);
        }

        /// <summary>Entry point from the pipeline. Never throws: an unexpected failure becomes no output.</summary>
        public static ModelResult Parse(INamedTypeSymbol type, AttributeData? modelAttribute, Compilation compilation, CancellationToken cancellation)
        {
            var parser = new ModelParser(ImmutableStack<INamedTypeSymbol>.Empty.Push(type), cancellation);
            var model = parser.ParseModel(type, modelAttribute, compilation, reportDiagnostics: true);
            return new ModelResult(model?.Spec, parser._diagnostics.ToEquatableArray());
        }

        /// <summary>
        /// [Train] on a class without [Model] (MD0410): nothing to train. When the class could take generated members
        /// (partial, a non-generic class in partial containers), the result also carries a stubs-only model: its partial
        /// properties get throwing implementations and <c>Run</c> a throwing one, so that the build shows MD0410 alone
        /// instead of also CS9248 for every partial layer property and CS0117 for <c>Run</c>.
        /// </summary>
        public static ModelResult ParseOrphanTrain(GeneratorAttributeSyntaxContext context, CancellationToken cancellation)
        {
            var type = (INamedTypeSymbol)context.TargetSymbol;
            var diagnostic = new DiagnosticInfo(DiagnosticDescriptors.TrainWithoutModel.Id,
                LocationInfo.From(context.Attributes.FirstOrDefault()?.ApplicationSyntaxReference?.GetSyntax(cancellation).GetLocation()),
                new[] { type.Name }.ToEquatableArray());
            var diagnostics = new[] { diagnostic }.ToEquatableArray();

            var declarations = type.DeclaringSyntaxReferences.Select(r => r.GetSyntax(cancellation)).OfType<TypeDeclarationSyntax>().ToArray();
            var containing = ContainingTypes(type).Reverse().ToArray();
            bool canComplete = type.TypeKind == TypeKind.Class && !type.IsStatic && !type.IsGenericType
                && declarations.Length > 0 && declarations.All(d => d is ClassDeclarationSyntax) && declarations.Any(d => d.Modifiers.Any(SyntaxKind.PartialKeyword))
                && containing.All(t => !t.IsGenericType && t.DeclaringSyntaxReferences.Select(r => r.GetSyntax(cancellation)).OfType<TypeDeclarationSyntax>()
                    .Any(d => d.Modifiers.Any(SyntaxKind.PartialKeyword)));
            if (!canComplete) return new ModelResult(null, diagnostics);

            var stubs = new ModelParser(ImmutableStack<INamedTypeSymbol>.Empty.Push(type), cancellation).UnimplementedPartialProperties(type, new List<LayerSpec>());
            var spec = new ModelSpec(
                type.ContainingNamespace is { IsGlobalNamespace: false } ns ? ns.ToDisplayString() : null,
                containing.Select(t => new ContainingType(Keyword(t.DeclaringSyntaxReferences.Select(r => r.GetSyntax(cancellation)).OfType<TypeDeclarationSyntax>().First()), t.Name)).ToEquatableArray(),
                type.Name, AccessibilityText(type.DeclaredAccessibility), "", "", false, true, "?", EquatableArray<LayerSpec>.Empty,
                TrainDeclared: true, Stubs: stubs, StubsOnly: true);
            return new ModelResult(spec, diagnostics);
        }

        /// <summary>The parsed model plus the facts a composing model needs about it.</summary>
        private sealed class Parsed
        {
            public ModelSpec Spec = null!;
            public Dim[] Input = Array.Empty<Dim>();
            public bool InputIsInteger;
            /// <summary>Null when the output is unknown at compile time (own forward, or errors).</summary>
            public Dim[]? Output;
            public long Parameters;
            /// <summary>Linear layers a hand-written forward reads through the typed property, here or in composed models.</summary>
            public List<TypedRead> TypedReads = new();
            /// <summary>The composed models its layers hold, by layer name (a pass target may name their layers).</summary>
            public Dictionary<string, Parsed> Blocks = new(StringComparer.Ordinal);

            /// <summary>The model as a pass target's scope (<see cref="OptimizationParser.Block"/>).</summary>
            public OptimizationParser.Block ToBlock() =>
                new(Spec.Layers.ToArray(), Input, Spec.OutputLayer, Spec.HasUserForward, name => Blocks.TryGetValue(name, out var inner) ? inner.ToBlock() : null);
        }

        /// <summary>A typed read of <paramref name="Layer"/> in the forward of <paramref name="Model"/>, at <paramref name="Path"/> from the model being parsed.</summary>
        private sealed record TypedRead(string Model, string Layer, string Path);

        private Parsed? ParseModel(INamedTypeSymbol type, AttributeData? modelAttribute, Compilation compilation, bool reportDiagnostics)
        {
            _cancellation.ThrowIfCancellationRequested();
            var report = reportDiagnostics ? (Action<DiagnosticDescriptor, Location?, string[]>)Report : (_, _, _) => { };
            var attributeLocation = modelAttribute?.ApplicationSyntaxReference?.GetSyntax(_cancellation).GetLocation();
            var identifierLocation = type.Locations.FirstOrDefault();

            if (ReadDeclaration(type, modelAttribute, compilation, attributeLocation, identifierLocation, ref report) is not { } declaration)
                return null;
            var input = declaration.Input;
            bool inputIsInteger = declaration.InputIsInteger, userForward = declaration.UserForward, hasErrors = declaration.HasErrors;

            var layers = ReadLayers(type, compilation, report, ref hasErrors);
            if (layers.Count == 0 && !hasErrors && !userForward)
                report(DiagnosticDescriptors.NoLayers, identifierLocation, new[] { type.Name });

            var trees = layers.Select(l => l.Tree).Where(t => t is not null).Distinct().ToArray();
            if (trees.Length > 1)
                report(DiagnosticDescriptors.LayersAcrossFiles, attributeLocation,
                    new[] { type.Name, string.Join(", ", trees.Select(t => System.IO.Path.GetFileName(t!.FilePath))) });

            // An input named like a layer would make a source name ambiguous.
            foreach (var named in declaration.Inputs.Where(i => layers.Any(l => l.Name == i.Name)))
            {
                report(DiagnosticDescriptors.InvalidModelInputs, named.Location, new[] { type.Name,
                    $"the input '{named.Name}' is named like a layer; a source name must say which it means, so rename the input" });
                hasErrors = true;
            }
            var inputs = layers.Select(l => new LayerInput(l.Name, l.IsField, l.Accessibility, l.TypeName, l.TypeDisplay, l.Kind, l.Params,
                l.AttributeText, l.Broken, l.Reader?.TiedTo)).ToArray();
            // [Model(Output = nameof(X))]: X must be a layer (a source name like "input" is not an output).
            string? outputLayer = declaration.OutputLayer;
            if (outputLayer is not null && !layers.Any(l => l.Name == outputLayer))
            {
                report(DiagnosticDescriptors.UnknownOutputLayer, declaration.OutputLocation, new[] { outputLayer, type.Name, string.Join(", ", layers.Select(l => l.Name)) });
                hasErrors = true;
                outputLayer = null;
            }
            var namedShapes = declaration.Inputs.Count == 0 ? null : declaration.Inputs.Select(i => (i.Name, i.Shape)).ToArray();
            var shapes = ShapeInference.Infer(type.Name, inputs, userForward ? null : input, inputIsInteger, userForward, hasErrors || input is null, _cancellation, outputLayer, namedShapes);
            // After an MD0031 on Inputs the input names are unknown: a source naming one is not reported again as MD0022.
            foreach (var problem in shapes.Problems.Where(q => !(declaration.InputsInvalid && q.Kind == ShapeProblemKind.Source)))
                Report(problem, layers[problem.Layer], report);
            if (!hasErrors && !shapes.Problems.Any(q => q.Kind is ShapeProblemKind.Source or ShapeProblemKind.TooFewSources))
                foreach (var unread in declaration.Inputs.Where(i => !shapes.Layers.Any(l => l.Sources.Contains(i.Name))))
                    report(DiagnosticDescriptors.UnreadInput, unread.Location, new[] { type.Name, unread.Name });
            var specs = shapes.Layers;
            var current = shapes.Output;
            bool currentIsInteger = shapes.OutputIsInteger;
            bool shapesFailed = shapes.Failed;
            long total = shapes.Parameters;

            bool outputKnown = !shapesFailed && !userForward && current is not null;

            var blocks = new Dictionary<string, Parsed>(StringComparer.Ordinal);
            foreach (var layer in layers.Where(l => l.Composed is not null)) blocks[layer.Name] = layer.Composed!;
            var plans = reportDiagnostics && !hasErrors
                ? ParsePlans(type, compilation, specs, input, inputIsInteger, outputKnown ? current : null, currentIsInteger, userForward, shapesFailed, report, outputLayer,
                    name => blocks.TryGetValue(name, out var block) ? block.ToBlock() : null)
                : new Plans { HasTrain = reportDiagnostics && HasAttribute(type, TrainParser.TrainAttributeName), ParametersAfter = specs.Sum(l => l.Parameters) };
            if (plans.Train is { IsLanguageModel: true } && declaration.Inputs.Count > 0)
                report(DiagnosticDescriptors.OneInputOnly, declaration.Inputs[0].Location, new[] { "Language-model training (a text file in windows of token ids)", type.Name,
                    Count(declaration.Inputs.Count), "train a language model on one input: Input = \"B, T\"" });
            // Typed reads of Linear layers in a hand-written forward, here and in composed models: [Quantize] breaks them.
            var quantize = type.GetAttributes().FirstOrDefault(a => a.AttributeClass?.ToDisplayString() == OptimizationParser.QuantizeAttributeName);
            var quantizeSyntax = quantize?.ApplicationSyntaxReference?.GetSyntax(_cancellation);
            string? quantizeText = quantize is null ? null : quantizeSyntax is null ? "[Quantize]" : "[" + Compact(quantizeSyntax.ToString()) + "]";
            var typedReads = new List<TypedRead>();
            if (userForward && !hasErrors)
            {
                foreach (var name in ForwardReader.Check(type, compilation, specs, reportDiagnostics ? quantizeText : null, report, _cancellation))
                    typedReads.Add(new TypedRead(type.Name, name, name));
            }
            foreach (var layer in layers.Where(l => l.Composed is not null))
            {
                foreach (var read in layer.Composed!.TypedReads)
                {
                    var path = new TypedRead(read.Model, read.Layer, layer.Name + "." + read.Path);
                    typedReads.Add(path);
                    if (quantizeText is not null && !hasErrors)
                        report(DiagnosticDescriptors.ComposedReadThroughProperty, quantizeSyntax?.GetLocation(),
                            new[] { quantizeText, path.Path, read.Model, read.Layer });
                }
            }

            var spec = new ModelSpec(
                type.ContainingNamespace is { IsGlobalNamespace: false } ns ? ns.ToDisplayString() : null,
                declaration.Containing.ToEquatableArray(),
                type.Name,
                AccessibilityText(type.DeclaredAccessibility),
                input is null ? declaration.InputText : ShapeText.Format(input),
                declaration.InputType.Length == 0 ? "Float32" : declaration.InputType,
                userForward,
                shapesFailed,
                outputKnown ? ShapeText.Format(current!) : "?",
                specs.ToEquatableArray(),
                plans.Train,
                plans.HasTrain,
                plans.Parallel,
                plans.Passes,
                plans.ParametersAfter,
                reportDiagnostics && (hasErrors || shapesFailed) ? UnimplementedPartialProperties(type, declaration.StubsOnly ? new List<LayerSpec>() : specs) : EquatableArray<PartialStub>.Empty,
                declaration.StubsOnly,
                shapes.IsGraph,
                outputLayer,
                declaration.Inputs.Select(i => new ModelInputSpec(i.Name, ShapeText.Format(i.Shape), i.Shape.Skip(1).Select(d => d.Size).ToEquatableArray())).ToEquatableArray());

            return new Parsed
            {
                TypedReads = typedReads,
                Blocks = blocks,
                Spec = spec,
                Input = input ?? Array.Empty<Dim>(),
                InputIsInteger = inputIsInteger,
                Output = outputKnown ? current : null,
                Parameters = total,
            };
        }

        /// <summary>Reports a shape problem on what it concerns: the argument, else the attribute, else the member.</summary>
        private static void Report(ShapeProblem problem, RawLayer layer, Action<DiagnosticDescriptor, Location?, string[]> report)
        {
            var location = problem.Kind is ShapeProblemKind.Shape or ShapeProblemKind.Unused && layer.Kind == LayerKind.Model && problem.Argument is null
                ? layer.MemberLocation
                : layer.Reader?.ArgumentLocation(problem.Argument) ?? layer.MemberLocation;
            var descriptor = problem.Kind switch
            {
                ShapeProblemKind.NotInferable => DiagnosticDescriptors.NotInferableWithUserForward,
                ShapeProblemKind.Tie => DiagnosticDescriptors.TiedWeightMismatch,
                ShapeProblemKind.Source => DiagnosticDescriptors.UnknownSource,
                ShapeProblemKind.TooFewSources => DiagnosticDescriptors.TooFewSources,
                ShapeProblemKind.Unused => DiagnosticDescriptors.UnusedLayer,
                _ => DiagnosticDescriptors.ForShapeError(problem.Error!.Value),
            };
            report(descriptor, location, problem.Inferred >= 0
                ? FixValue.Append(problem.Args, problem.Inferred.ToString(System.Globalization.CultureInfo.InvariantCulture))
                : problem.Args);
        }

        /// <summary>What the class declaration and its [Model] attribute say, before any layer is read.</summary>
        private sealed class Declaration
        {
            public List<ContainingType> Containing = new();
            public string InputText = "";
            /// <summary>Null when the input shape does not parse.</summary>
            public Dim[]? Input;
            public string InputType = "";
            public bool InputIsInteger;
            public bool UserForward;
            /// <summary>[Model(Output = ...)]: the layer whose output the model returns, and where it was written.</summary>
            public string? OutputLayer;
            public Location? OutputLocation;
            /// <summary>[Model(Inputs = ...)] when it declares several valid inputs (Input is then their packed row); else empty.</summary>
            public List<NamedInput> Inputs = new();
            /// <summary>[Model(Inputs = ...)] was written but is wrong (MD0031): a source naming one of its inputs is not checked.</summary>
            public bool InputsInvalid;
            /// <summary>Another base class: implement the partial properties alone.</summary>
            public bool StubsOnly;
            public bool HasErrors;
        }

        /// <summary>
        /// Checks the class (partial, a class, not generic, its containers partial, its base) and reads [Model]'s input
        /// and the forward methods. Null when nothing can be generated; <paramref name="report"/> becomes silent for a
        /// class that is not partial (the compiler's one complaint is then CS0260).
        /// </summary>
        private Declaration? ReadDeclaration(INamedTypeSymbol type, AttributeData? modelAttribute, Compilation compilation,
            Location? attributeLocation, Location? identifierLocation, ref Action<DiagnosticDescriptor, Location?, string[]> report)
        {

            if (compilation.GetTypeByMetadataName("TorchSharp.torch") is null)
            {
                report(DiagnosticDescriptors.TorchSharpMissing, attributeLocation, new[] { type.Name });
                return null;
            }

            var declarations = type.DeclaringSyntaxReferences
                .Select(r => r.GetSyntax(_cancellation)).OfType<TypeDeclarationSyntax>().ToArray();
            bool notPartial = declarations.Length > 0 && !declarations.Any(d => d.Modifiers.Any(SyntaxKind.PartialKeyword));
            if (notPartial)
            {
                report(DiagnosticDescriptors.ClassNotPartial, identifierLocation, new[] { type.Name });
                // Go on, silently, to emit the error skeleton: it implements the class's partial properties, so the
                // compiler's one complaint is CS0260 on the same name instead of CS0751 and CS9248 for every layer.
                // Other mistakes are reported once the class is partial.
                report = (_, _, _) => { };
            }

            string? unsupported =
                declarations.Any(d => d is RecordDeclarationSyntax) ? "records are not supported; use a class" :
                type.TypeKind != TypeKind.Class ? "only classes can be models" :
                type.IsStatic ? "a static class cannot be instantiated" :
                type.IsAbstract ? "an abstract class cannot be instantiated" :
                type.IsGenericType || ContainingTypes(type).Any(t => t.IsGenericType) ? "generic models are not supported" :
                null;
            if (unsupported is not null)
            {
                report(DiagnosticDescriptors.UnsupportedClass, identifierLocation, new[] { type.Name, unsupported });
                return null;
            }

            var containing = new List<ContainingType>();
            foreach (var outer in ContainingTypes(type))
            {
                var outerDecls = outer.DeclaringSyntaxReferences.Select(r => r.GetSyntax(_cancellation)).OfType<TypeDeclarationSyntax>().ToArray();
                if (outerDecls.Length == 0 || !outerDecls.Any(d => d.Modifiers.Any(SyntaxKind.PartialKeyword)))
                {
                    report(DiagnosticDescriptors.ContainingTypeNotPartial, identifierLocation, new[] { type.Name, outer.Name });
                    return null;
                }
                containing.Insert(0, new ContainingType(Keyword(outerDecls[0]), outer.Name));
            }

            bool hasErrors = notPartial;
            bool stubsOnly = false;
            var baseType = type.BaseType;
            if (baseType is not null && baseType.SpecialType != SpecialType.System_Object && !IsTorchModule(baseType))
            {
                report(DiagnosticDescriptors.ConflictingBaseClass, identifierLocation, new[] { type.Name, baseType.ToDisplayString() });
                hasErrors = true;
                // The Module<Tensor, Tensor> skeleton would clash with the other base (CS0263): implement the partial
                // properties alone.
                stubsOnly = true;
            }

            // [Model(Input = "...", InputType = ...)]
            string inputText = "";
            int inputTypeValue = 0;
            string? outputLayer = null;
            string?[]? inputEntries = null;
            Location? inputLocation = attributeLocation, outputLocation = attributeLocation;
            if (modelAttribute is not null)
            {
                foreach (var named in modelAttribute.NamedArguments)
                {
                    if (named.Key == nameof(ModelAttribute.Input) && named.Value.Value is string s) inputText = s;
                    if (named.Key == nameof(ModelAttribute.InputType) && named.Value.Value is int i) inputTypeValue = i;
                    if (named.Key == nameof(ModelAttribute.Output)) outputLayer = named.Value.Value as string ?? "null";
                    if (named.Key == nameof(ModelAttribute.Inputs))
                        inputEntries = named.Value.Kind == TypedConstantKind.Array && !named.Value.IsNull ? named.Value.Values.Select(v => v.Value as string).ToArray() : Array.Empty<string?>();
                }
                if (outputLayer is not null) outputLocation = LayerAttributeReader.For(modelAttribute).ArgumentLocation(nameof(ModelAttribute.Output)) ?? attributeLocation;
                inputLocation = LayerAttributeReader.For(modelAttribute).ArgumentLocation(nameof(ModelAttribute.Input)) ?? attributeLocation;
            }

            // DType by value, named from the DSL's own enum (compiled into the generator).
            string inputType = Enum.IsDefined(typeof(DType), inputTypeValue) ? ((DType)inputTypeValue).ToString() : "";
            if (inputType.Length == 0)
            {
                var typeLocation = modelAttribute is null ? attributeLocation : LayerAttributeReader.For(modelAttribute).ArgumentLocation(nameof(ModelAttribute.InputType));
                report(DiagnosticDescriptors.InvalidInputType, typeLocation, new[] { inputTypeValue.ToString(System.Globalization.CultureInfo.InvariantCulture), type.Name });
                hasErrors = true;
            }

            Dim[]? input = null;
            var namedInputs = new List<NamedInput>();
            bool inputsInvalid = false;
            if (inputEntries is not null)
            {
                namedInputs = ReadInputs(type.Name, modelAttribute!, inputEntries, inputText.Length > 0, report);
                if (namedInputs.Count == 0) { hasErrors = true; inputsInvalid = true; }
                else input = PackedInput(namedInputs);
            }
            else if (!ShapeText.TryParse(inputText, out var parsedInput, out var inputError))
            {
                report(DiagnosticDescriptors.MalformedInput, inputLocation, new[] { inputText, type.Name, inputError });
                hasErrors = true;
            }
            else input = parsedInput;

            bool inputIsInteger = inputType is "Int64" or "Int32";
            var forwards = LayerMember.Forwards(type, _cancellation);
            bool userForward = forwards.Any(m => m.Parameters == 1);
            // The first forward that takes several tensors (-1: none, or a one-tensor forward decides).
            int multiInput = userForward ? -1 : forwards.FindIndex(m => m.Parameters > 1);
            if (namedInputs.Count > 0 && (userForward || multiInput >= 0))
            {
                // The generated forward takes the inputs by name and the packed row; a hand-written one would replace both.
                report(DiagnosticDescriptors.OneInputOnly, userForward ? forwards.First(m => m.Parameters == 1).Location : forwards[multiInput].Location,
                    new[] { "A hand-written forward", type.Name, Count(namedInputs.Count), "remove it: the generated forward takes the inputs in declaration order and runs the layers on them" });
                hasErrors = true;
            }
            else if (multiInput >= 0)
            {
                // Without this the generated one-input forward runs the layers in order and the shapes of the
                // second input's path fail (MD0101 on a later layer), which says nothing about the real problem.
                report(DiagnosticDescriptors.OneInputTensor, forwards[multiInput].Location,
                    new[] { type.Name, forwards[multiInput].Parameters.ToString(System.Globalization.CultureInfo.InvariantCulture) });
                hasErrors = true;
            }
            else if (userForward)
                report(DiagnosticDescriptors.UserForwardUnchecked, identifierLocation, new[] { type.Name });

            return new Declaration
            {
                Containing = containing, InputText = input is null ? inputText : ShapeText.Format(input), Input = input, Inputs = namedInputs, InputsInvalid = inputsInvalid, InputType = inputType, InputIsInteger = inputIsInteger,
                UserForward = userForward, StubsOnly = stubsOnly, HasErrors = hasErrors, OutputLayer = outputLayer, OutputLocation = outputLocation,
            };
        }

        /// <summary>One of several model inputs: its name, shape and where its entry was written.</summary>
        private sealed record NamedInput(string Name, Dim[] Shape, Location? Location)
        {
            /// <summary>Its per-sample elements: its columns in a packed row.</summary>
            public long Elements => Shape.Skip(1).Aggregate(1L, (n, d) => n * d.Size);
        }

        /// <summary>
        /// Reads [Model(Inputs = ...)]: two or more "name: shape" entries with distinct names, concrete per-sample sizes
        /// and one batch dim (a packed row holds them side by side), and no Input beside them. Every problem is MD0031
        /// on its entry; empty when any entry is wrong.
        /// </summary>
        private static List<NamedInput> ReadInputs(string model, AttributeData attribute, string?[] entries, bool inputWritten,
            Action<DiagnosticDescriptor, Location?, string[]> report)
        {
            var reader = LayerAttributeReader.For(attribute);
            var argument = reader.ArgumentLocation(nameof(ModelAttribute.Inputs));
            if (inputWritten)
            {
                report(DiagnosticDescriptors.InvalidModelInputs, reader.ArgumentLocation(nameof(ModelAttribute.Input)),
                    new[] { model, "it declares both Input and Inputs; declare one input with Input, or several with Inputs" });
                return new List<NamedInput>();
            }
            if (entries.Length < 2)
            {
                report(DiagnosticDescriptors.InvalidModelInputs, argument, new[] { model,
                    $"Inputs declares {entries.Length} input{(entries.Length == 1 ? "" : "s")}; it takes two or more (\"name: shape\" each); for one input write Input = \"B, ...\"" });
                return new List<NamedInput>();
            }
            var locations = ElementLocations(attribute, nameof(ModelAttribute.Inputs));
            var inputs = new List<NamedInput>();
            bool valid = true;
            for (int i = 0; i < entries.Length; i++)
            {
                var location = i < locations.Count ? locations[i] : argument;
                string? problem = null;
                if (!ShapeText.TryParseNamed(entries[i], out string name, out var dims, out string error)) problem = error;
                else if (inputs.Any(x => x.Name == name)) problem = $"two inputs are named '{name}'; each input needs its own name";
                else if (dims.Length < 2 || dims.Skip(1).Any(d => !d.IsConcrete))
                    problem = $"input '{name}' is {ShapeText.Format(dims)}; after the batch dim every size must be a number (the inputs sit side by side in one data row)";
                else if (name.StartsWith("__", StringComparison.Ordinal) || name == "forward" || name == "Pack")
                    problem = $"the input name '{name}' is taken by the generated class (its forward, Pack or a layer slot '__Name'); name it otherwise";
                else if (dims.Skip(1).Aggregate(1.0, (n, d) => n * d.Size) + inputs.Sum(x => (double)x.Elements) > int.MaxValue)
                    problem = $"input '{name}' makes a packed row of more than {int.MaxValue:N0} values per sample; libtorch's column index would overflow";
                else if (inputs.Count > 0 && !dims[0].Equals(inputs[0].Shape[0]))
                    problem = $"input '{name}' has batch dim {dims[0]}, but '{inputs[0].Name}' has {inputs[0].Shape[0]}; every input shares the batch";
                if (problem is not null)
                {
                    report(DiagnosticDescriptors.InvalidModelInputs, location, new[] { model, problem });
                    valid = false;
                    continue;
                }
                inputs.Add(new NamedInput(name, dims, location));
            }
            return valid ? inputs : new List<NamedInput>();
        }

        /// <summary>The packed row of several inputs: the batch, then every input's per-sample elements in order.</summary>
        private static Dim[] PackedInput(List<NamedInput> inputs) =>
            new[] { inputs[0].Shape[0], Dim.Of(inputs.Sum(i => i.Elements)) };

        /// <summary>The location of each element of the array argument <paramref name="name"/> (empty when not written as an array).</summary>
        private static List<Location> ElementLocations(AttributeData attribute, string name)
        {
            var argument = (attribute.ApplicationSyntaxReference?.GetSyntax() as AttributeSyntax)?.ArgumentList?.Arguments
                .FirstOrDefault(a => a.NameEquals?.Name.Identifier.ValueText == name);
            var elements = argument?.Expression switch
            {
                ImplicitArrayCreationExpressionSyntax implicitArray => implicitArray.Initializer.Expressions.Select(e => e.GetLocation()),
                ArrayCreationExpressionSyntax array => array.Initializer?.Expressions.Select(e => e.GetLocation()),
                CollectionExpressionSyntax collection => collection.Elements.Select(e => e.GetLocation()),
                _ => null,
            };
            return elements?.ToList() ?? new List<Location>();
        }

        /// <summary>The model's plans: [Train], [Parallel] and the optimisation passes, each checked against the layers.</summary>
        private sealed class Plans
        {
            public TrainSpec? Train;
            public bool HasTrain;
            public ParallelSpec? Parallel;
            public EquatableArray<PassSpec> Passes = EquatableArray<PassSpec>.Empty;
            public long ParametersAfter;
        }

        /// <summary>
        /// Reads the plan attributes of the model being compiled (composed models' plans are theirs to check).
        /// <paramref name="output"/> is null when unknown at compile time; the passes need every shape.
        /// </summary>
        private static Plans ParsePlans(INamedTypeSymbol type, Compilation compilation, List<LayerSpec> specs, Dim[]? input, bool inputIsInteger,
            Dim[]? output, bool outputIsInteger, bool userForward, bool shapesFailed, Action<DiagnosticDescriptor, Location?, string[]> report, string? outputLayer,
            Func<string, OptimizationParser.Block?> blocks)
        {
            var last = outputLayer is not null ? specs.FirstOrDefault(l => l.MemberName == outputLayer) : specs.LastOrDefault();
            var attributes = type.GetAttributes();
            var trainAttribute = attributes.FirstOrDefault(a => a.AttributeClass?.ToDisplayString() == TrainParser.TrainAttributeName);
            var plans = new Plans { HasTrain = trainAttribute is not null, ParametersAfter = specs.Sum(l => l.Parameters) };
            if (trainAttribute is not null)
            {
                plans.Train = TrainParser.Parse(type.Name, trainAttribute, compilation, input, inputIsInteger,
                    output, outputIsInteger, last?.KindName, report,
                    specs.Where(l => l.Kind == LayerKind.PositionalEmbedding).Select(l => l.Args.Count).DefaultIfEmpty(long.MaxValue).Min(),
                    specs.Select(l => l.Kind).ToArray());
                // A [Loss] method replaces the declared loss's formula (its own checks run on the method: LossMethodParser.Check).
                if (plans.Train is not null && LossMethodParser.Find(type) is { } lossMethod)
                    plans.Train = plans.Train with { LossMethod = lossMethod };
            }
            var parallelAttribute = attributes.FirstOrDefault(a => a.AttributeClass?.ToDisplayString() == ParallelParser.ParallelAttributeName);
            if (parallelAttribute is not null)
            {
                var batchNorms = specs.Where(l => l.Kind == LayerKind.BatchNorm1d || l.Kind == LayerKind.BatchNorm2d).Select(l => l.MemberName).ToArray();
                plans.Parallel = ParallelParser.Parse(type.Name, parallelAttribute, trainAttribute is not null, batchNorms, report);
            }
            if (plans.Train is not null && !shapesFailed && !userForward)
                plans.Train = MemoryPlanner.Plan(type.Name, plans.Train, plans.Parallel, specs, input, trainAttribute!, report);
            var passAttributes = attributes
                .Where(a => a.AttributeClass?.ToDisplayString() is OptimizationParser.PruneAttributeName or OptimizationParser.QuantizeAttributeName)
                .OrderBy(a => a.ApplicationSyntaxReference?.Span.Start ?? 0).ToArray();
            if (passAttributes.Length > 0 && !shapesFailed
                && OptimizationParser.Parse(passAttributes, specs, userForward, trainAttribute is not null, report, input, last?.MemberName, blocks) is { } passes)
                (plans.Passes, plans.ParametersAfter) = passes;
            return plans;
        }

        private static bool HasAttribute(INamedTypeSymbol type, string name) =>
            type.GetAttributes().Any(a => a.AttributeClass?.ToDisplayString() == name);

        /// <summary>A layer as read from its member, before shapes.</summary>
        private sealed class RawLayer
        {
            public string Name = "";
            public bool IsField;
            public string Accessibility = "private";
            public string TypeName = "";
            public string TypeDisplay = "";
            public LayerKind Kind = LayerKind.Identity;
            public LayerParams Params = new();
            public LayerAttributeReader? Reader;
            public string AttributeText = "";
            public Location? MemberLocation;
            public SyntaxTree? Tree;
            /// <summary>The compiler already reports this layer's attribute (e.g. wrong constructor arguments).</summary>
            public bool Broken;
            /// <summary>A composed model layer: what parsing that model found.</summary>
            public Parsed? Composed;
        }

        private List<RawLayer> ReadLayers(INamedTypeSymbol type, Compilation compilation,
            Action<DiagnosticDescriptor, Location?, string[]> report, ref bool hasErrors)
        {
            var layers = new List<RawLayer>();
            foreach (var member in LayerMember.Of(type, compilation, _cancellation))
            {
                _cancellation.ThrowIfCancellationRequested();

                // From syntax where it settles the attributes (LayerAttributeSyntax), else bound as the compiler binds them.
                var fromSyntax = LayerAttributeSyntax.TryRead(member.AttributeLists, type, compilation, _cancellation);
                var layerAttributes = fromSyntax is null ? member.Symbol.GetAttributes().Where(a => IsLayerAttribute(a.AttributeClass)).ToArray() : Array.Empty<AttributeData>();
                int layerCount = fromSyntax?.Count ?? layerAttributes.Length;
                var memberType = member.Type;
                var location = member.Location;
                var propertySyntax = member.PropertySyntax;
                bool isPartialProperty = propertySyntax.Any(s => s.Modifiers.Any(SyntaxKind.PartialKeyword));

                if (layerCount == 0)
                {
                    // [RNN], [LSTMCell], [MultiheadAttention]: a layer the user expects ModelDsl to have. The compiler
                    // says only that the name is not an attribute (CS0616) or unknown (CS0246).
                    // (Read from syntax, every attribute's name was a known attribute class.)
                    string? unknown = fromSyntax is not null ? null : member.Symbol.GetAttributes().Where(a => !IsAttributeClass(a.AttributeClass))
                        .Select(a => (a.ApplicationSyntaxReference?.GetSyntax(_cancellation) as AttributeSyntax)?.Name.ToString())
                        .FirstOrDefault(n => n is not null);
                    if (!isPartialProperty && unknown is null) continue;
                    if (unknown is null && memberType is INamedTypeSymbol { } sub && HasModelAttribute(sub))
                    {
                        var composed = ReadComposed(member, sub, compilation, location, report, ref hasErrors);
                        if (composed is not null) layers.Add(composed);
                        continue;
                    }
                    report(DiagnosticDescriptors.NotALayer, location, new[]
                    {
                        member.Name, type.Name,
                        unknown is not null
                            ? $"[{unknown}] is not a ModelDsl layer attribute. The layers are: {SupportedLayers}; README.md lists what is not supported yet"
                            : $"it has no layer attribute and its type '{memberType.ToDisplayString()}' is not a [Model] class",
                    });
                    hasErrors = true;
                    continue;
                }

                if (layerCount > 1)
                {
                    report(DiagnosticDescriptors.MultipleLayerAttributes, location, new[] { member.Name });
                    hasErrors = true;
                    continue;
                }

                string? shapeProblem = MemberProblem(member);
                if (shapeProblem is not null)
                {
                    report(DiagnosticDescriptors.InvalidLayerMember, location, new[] { member.Name, shapeProblem });
                    hasErrors = true;
                    continue;
                }

                var attribute = fromSyntax is null ? layerAttributes[0] : null;
                string kindName = (fromSyntax?.AttributeClass ?? attribute!.AttributeClass)!.Name;
                if (kindName.EndsWith("Attribute", StringComparison.Ordinal)) kindName = kindName.Substring(0, kindName.Length - "Attribute".Length);
                var attributeSyntax = fromSyntax is not null ? fromSyntax.Syntax : attribute!.ApplicationSyntaxReference?.GetSyntax(_cancellation);
                var layer = new RawLayer
                {
                    Name = member.Name,
                    IsField = member.IsField,
                    Accessibility = AccessibilityText(member.DeclaredAccessibility),
                    TypeName = TypeNames.FullyQualified(memberType),
                    TypeDisplay = memberType.Name,
                    MemberLocation = location,
                    Tree = location?.SourceTree,
                    AttributeText = attributeSyntax is null ? "[" + kindName + "]" : "[" + Compact(attributeSyntax.ToString()) + "]",
                };

                if (!LayerKind.TryGet(kindName, out var kind) || (attribute is not null && attribute.AttributeConstructor is null))
                {
                    // The compiler reports the bad attribute itself (missing or wrong arguments); do not pile on.
                    layer.Broken = true;
                    hasErrors = true;
                    layers.Add(layer);
                    continue;
                }

                layer.Kind = kind;
                layer.Reader = fromSyntax?.Reader ?? LayerAttributeReader.For(attribute!);
                layer.Params = layer.Reader.ReadParams(kind);
                if (kind.Recurrent && member.IsField)
                {
                    // The generated forward runs a recurrent layer through a slot that passes its output sequence on
                    // (an LSTM returns a tuple), and only a partial property has one.
                    report(DiagnosticDescriptors.InvalidLayerMember, location, new[] { member.Name,
                        $"a partial get-only property ('public partial {memberType.Name} {member.Name} {{ get; }}'): a [{kindName}] layer runs through a slot that passes its output sequence on, which a field cannot hold" });
                    hasErrors = true;
                    continue;
                }

                // TorchSharp's module, or (the Transformer layers) the runtime's own.
                string expected = kind.ModuleType;
                if (memberType.TypeKind != TypeKind.Error && FullMetadataName(memberType) != expected)
                {
                    var typeLocation = propertySyntax.FirstOrDefault()?.Type.GetLocation() ?? location;
                    report(DiagnosticDescriptors.LayerTypeMismatch, typeLocation,
                        new[] { kindName, expected, member.Name, memberType.ToDisplayString() });
                    hasErrors = true;
                    layer.Broken = true;
                }
                else if (memberType.TypeKind == TypeKind.Error)
                {
                    layer.Broken = true;
                    hasErrors = true;
                }
                layers.Add(layer);
            }
            return layers;
        }

        private RawLayer? ReadComposed(LayerMember member, INamedTypeSymbol sub, Compilation compilation, Location? location,
            Action<DiagnosticDescriptor, Location?, string[]> report, ref bool hasErrors)
        {
            var layer = new RawLayer
            {
                Name = member.Name,
                Accessibility = AccessibilityText(member.DeclaredAccessibility),
                TypeName = sub.ToDisplayString(SymbolDisplayFormat.FullyQualifiedFormat),
                TypeDisplay = sub.Name,
                Kind = LayerKind.Model,
                AttributeText = "[Model] " + sub.Name,
                MemberLocation = location,
                Tree = location?.SourceTree,
            };

            string? problem = MemberProblem(member);
            if (problem is not null)
            {
                report(DiagnosticDescriptors.InvalidLayerMember, location, new[] { member.Name, problem });
                hasErrors = true;
                return null;
            }

            if (_path.Any(t => SymbolEqualityComparer.Default.Equals(t, sub)))
            {
                _cycleTarget = sub;
                _cycleChain = string.Join(" -> ", _path.Reverse().Select(t => t.Name).Concat(new[] { sub.Name }));
                report(DiagnosticDescriptors.ModelContainsItself, location, new[] { member.Name, sub.Name, _cycleChain });
                hasErrors = true;
                layer.Broken = true;
                return layer;
            }

            // Parse the composed model for its shapes only (once per run); its own diagnostics are reported where it
            // is declared.
            if (!_composed.TryGetValue(sub, out var parsed))
            {
                var inner = new ModelParser(_path.Push(sub), _cancellation, _composed);
                var subAttribute = sub.GetAttributes().FirstOrDefault(a => a.AttributeClass?.ToDisplayString() == ModelAttributeName);
                parsed = inner.ParseModel(sub, subAttribute, compilation, reportDiagnostics: false);
                if (inner._cycleTarget is not null)
                {
                    // A -> B -> A: report on A's member when compiling A (and on B's when compiling B), not on models
                    // that merely contain such a pair.
                    var root = _path.Reverse().First();
                    if (SymbolEqualityComparer.Default.Equals(inner._cycleTarget, root))
                        report(DiagnosticDescriptors.ModelContainsItself, location, new[] { member.Name, root.Name, inner._cycleChain });
                    _cycleTarget ??= inner._cycleTarget;
                    if (_cycleChain.Length == 0) _cycleChain = inner._cycleChain;
                    hasErrors = true;
                    layer.Broken = true;
                    return layer;
                }
                _composed[sub] = parsed;
            }
            if (parsed is null || (parsed.Spec.HasErrors && !parsed.Spec.HasUserForward))
            {
                layer.Broken = true;
                hasErrors = true;
                return layer;
            }

            if (parsed.Spec.IsMultiInput)
            {
                report(DiagnosticDescriptors.OneInputOnly, location, new[] { $"A composed model layer ('{member.Name}')", sub.Name, Count(parsed.Spec.Inputs.Count),
                    "a layer reads one tensor; give the composing model the inputs instead" });
                hasErrors = true;
                layer.Broken = true;
                return layer;
            }
            layer.Composed = parsed;
            layer.Params = new LayerParams
            {
                SubInput = parsed.Input,
                SubInputIsInteger = parsed.InputIsInteger,
                SubOutput = parsed.Output,
                SubParams = parsed.Parameters,
            };
            // [Block(From = ..., Repeat = n)]: where the composed model reads, and how many copies run in sequence.
            // (A member without attributes has no [Block]: its symbol, and the class's member table, are not needed.)
            if (member.AttributeLists is not { Count: 0 }
                && member.Symbol.GetAttributes().FirstOrDefault(a => a.AttributeClass?.ToDisplayString() == BlockAttributeName) is { } block)
            {
                layer.Reader = LayerAttributeReader.For(block);
                layer.Params.From = layer.Reader.String("From");
                long repeat = layer.Reader.Long("Repeat") ?? 1;
                if (repeat < 1)
                {
                    report(DiagnosticDescriptors.RepeatBelowOne, layer.Reader.ArgumentLocation("Repeat"), new[] { member.Name, repeat.ToString(System.Globalization.CultureInfo.InvariantCulture) });
                    hasErrors = true;
                    layer.Broken = true;
                }
                layer.Params.Own = new BlockArguments(repeat);
                if (block.ApplicationSyntaxReference?.GetSyntax(_cancellation) is { } blockSyntax)
                    layer.AttributeText = "[" + Compact(blockSyntax.ToString()) + "] " + sub.Name;
            }
            return layer;
        }

        /// <summary>
        /// The partial properties of a model with errors that neither the user nor the skeleton implements (members
        /// rejected as layers, e.g. MD0005, MD0007, MD0009). The generator implements them with throwing accessors so
        /// that the build shows the MD diagnostic alone, not also CS9248 for each of them.
        /// </summary>
        private EquatableArray<PartialStub> UnimplementedPartialProperties(INamedTypeSymbol type, List<LayerSpec> layers)
        {
            var implementedBySkeleton = new HashSet<string>(layers.Where(l => !l.IsField).Select(l => l.MemberName), StringComparer.Ordinal);
            // Syntax, not symbols: the pinned Roslyn has no PartialImplementationPart, and the parts are found by name.
            var properties = type.DeclaringSyntaxReferences
                .Select(r => r.GetSyntax(_cancellation)).OfType<TypeDeclarationSyntax>()
                .SelectMany(d => d.Members.OfType<PropertyDeclarationSyntax>())
                .Where(p => p.Modifiers.Any(SyntaxKind.PartialKeyword))
                .GroupBy(p => p.Identifier.ValueText, StringComparer.Ordinal);
            var stubs = new List<PartialStub>();
            foreach (var group in properties)
            {
                var parts = group.ToArray();
                if (parts.Length != 1 || HasBody(parts[0]) || parts[0].AccessorList is not { } accessors) continue;
                if (implementedBySkeleton.Contains(group.Key)) continue;
                var symbol = type.GetMembers(group.Key).OfType<IPropertySymbol>().FirstOrDefault();
                // An unresolved type is already an error on the user's line; a stub would only repeat it.
                if (symbol is null || symbol.IsIndexer || symbol.Type.TypeKind == TypeKind.Error) continue;
                stubs.Add(new PartialStub(
                    string.Join(" ", parts[0].Modifiers.Where(m => !m.IsKind(SyntaxKind.PartialKeyword)).Select(m => m.Text)),
                    symbol.Type.ToDisplayString(SymbolDisplayFormat.FullyQualifiedFormat.AddMiscellaneousOptions(SymbolDisplayMiscellaneousOptions.IncludeNullableReferenceTypeModifier)),
                    group.Key,
                    accessors.Accessors.Select(a => string.Join(" ", a.Modifiers.Select(m => m.Text).Concat(new[] { a.Keyword.Text }))).ToEquatableArray()));
            }
            return stubs.ToEquatableArray();
        }

        /// <summary>Why a member cannot hold a layer, or null if it can.</summary>
        private static string? MemberProblem(LayerMember member)
        {
            if (member.IsStatic) return "an instance member, not static";
            if (member.IsField) return null;

            var propertySyntax = member.PropertySyntax;
            if (member.IsIndexer) return "a property, not an indexer";
            if (propertySyntax.Length == 0 || !propertySyntax.Any(s => s.Modifiers.Any(SyntaxKind.PartialKeyword)))
                return "a 'partial' property (e.g. 'public partial Linear Hidden { get; }') so the generator can implement it";
            if (propertySyntax.Length > 1 || propertySyntax.Any(HasBody))
                return "a partial property declaration without a body; the generator writes the implementation";
            if (member.HasSetter) return "get-only ('{ get; }'): the layer is created once, in the constructor";
            if (member.IsOverridable) return "a plain property (not abstract, virtual or override)";
            return null;
        }

        private static bool HasBody(PropertyDeclarationSyntax s) =>
            s.ExpressionBody is not null || s.Initializer is not null ||
            (s.AccessorList?.Accessors.Any(a => a.Body is not null || a.ExpressionBody is not null) ?? false);

        private static IEnumerable<INamedTypeSymbol> ContainingTypes(INamedTypeSymbol type)
        {
            for (var t = type.ContainingType; t is not null; t = t.ContainingType) yield return t;
        }

        private static string Keyword(TypeDeclarationSyntax declaration) => declaration switch
        {
            RecordDeclarationSyntax r => r.ClassOrStructKeyword.IsKind(SyntaxKind.StructKeyword) ? "record struct" : "record",
            StructDeclarationSyntax => "struct",
            InterfaceDeclarationSyntax => "interface",
            _ => "class",
        };

        internal static bool IsLayerAttribute(INamedTypeSymbol? attributeClass)
        {
            for (var t = attributeClass?.BaseType; t is not null; t = t.BaseType)
                if (TypeNames.Display(t) == LayerAttributeName) return true;
            return false;
        }

        /// <summary>The layer attributes, from the layer kinds the shape rules know (so the list cannot go stale).</summary>
        private static readonly string SupportedLayers = string.Join(", ",
            LayerKind.All.Where(k => k != LayerKind.Model).Select(k => "[" + k.Name + "]"));

        /// <summary>Whether the class is a real attribute (derives from System.Attribute); false for unknown names.</summary>
        internal static bool IsAttributeClass(INamedTypeSymbol? attributeClass)
        {
            if (attributeClass is null || attributeClass.TypeKind == TypeKind.Error) return false;
            for (var t = attributeClass.BaseType; t is not null; t = t.BaseType)
                if (TypeNames.Display(t) == "System.Attribute") return true;
            return false;
        }

        private static bool HasModelAttribute(INamedTypeSymbol type) =>
            type.GetAttributes().Any(a => a.AttributeClass?.ToDisplayString() == ModelAttributeName);

        private static bool IsTorchModule(INamedTypeSymbol type) =>
            type.OriginalDefinition.ToDisplayString() == "TorchSharp.torch.nn.Module<T1, T2>" &&
            type.TypeArguments.All(a => a.ToDisplayString() == "TorchSharp.torch.Tensor");

        private static string FullMetadataName(ITypeSymbol type) => TypeNames.FullMetadataName(type);

        internal static string AccessibilityText(Accessibility accessibility) => accessibility switch
        {
            Accessibility.Public => "public",
            Accessibility.Internal => "internal",
            Accessibility.Protected => "protected",
            Accessibility.ProtectedOrInternal => "protected internal",
            Accessibility.ProtectedAndInternal => "private protected",
            _ => "private",
        };

        /// <summary>The text with each run of spaces, tabs and line breaks made one space, and none at either end.</summary>
        private static string Compact(string text)
        {
            var sb = new System.Text.StringBuilder(text.Length);
            bool space = false;
            foreach (char c in text)
            {
                if (c is ' ' or '\r' or '\n' or '\t') { space = sb.Length > 0; continue; }
                if (space) sb.Append(' ');
                space = false;
                sb.Append(c);
            }
            return sb.ToString();
        }

        private static string Count(int inputs) => inputs.ToString(System.Globalization.CultureInfo.InvariantCulture) + " inputs";

        private void Report(DiagnosticDescriptor descriptor, Location? location, string[] arguments) =>
            _diagnostics.Add(new DiagnosticInfo(descriptor.Id, LocationInfo.From(location), arguments.ToEquatableArray()));
    }
}
