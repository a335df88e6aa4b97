namespace ModelDsl.Generators.Parsing
{
    /// <summary>
    /// A model's custom loss: the static method marked [Loss], <c>static Tensor Name(Tensor output, Tensor target)</c>.
    /// Each [Loss] method is checked on its own (MD0414 signature, MD0415 a second one, MD0416 no [Train]); the model's
    /// plan takes the one that passes (<see cref="Find"/>).
    /// </summary>
    internal static class LossMethodParser
    {
        internal const string LossAttributeName = "ModelDsl.LossAttribute";

        /// <summary>The model's valid [Loss] method, if it has exactly one [Loss] method and its signature is right.</summary>
        public static string? Find(INamedTypeSymbol type)
        {
            // A [Loss] method carries an attribute in the syntax: a class without an attributed method has none, and
            // Roslyn need not build its member table to say so.
            if (!type.DeclaringSyntaxReferences.Any(r => r.GetSyntax() is TypeDeclarationSyntax declaration
                    && declaration.Members.Any(m => m is MethodDeclarationSyntax { AttributeLists.Count: > 0 })))
                return null;
            var methods = LossMethods(type);
            return methods.Count == 1 && SignatureProblem(methods[0], CancellationToken.None) is null ? methods[0].Name : null;
        }

        /// <summary>The diagnostics of one [Loss] method (none when it is right). Never throws (but for cancellation).</summary>
        public static EquatableArray<DiagnosticInfo> Check(IMethodSymbol method, AttributeData? attribute, CancellationToken cancellation)
        {
            try
            {
                return CheckMethod(method, attribute, cancellation);
            }
            catch (System.Exception e) when (e is not System.OperationCanceledException)
            {
                return EquatableArray<DiagnosticInfo>.Empty;
            }
        }

        private static EquatableArray<DiagnosticInfo> CheckMethod(IMethodSymbol method, AttributeData? attribute, CancellationToken cancellation)
        {
            var diagnostics = new List<DiagnosticInfo>();
            void Add(DiagnosticDescriptor descriptor, Location? location, params string[] arguments) =>
                diagnostics.Add(new DiagnosticInfo(descriptor.Id, LocationInfo.From(location), arguments.ToEquatableArray()));

            var attributeLocation = attribute?.ApplicationSyntaxReference?.GetSyntax(cancellation).GetLocation();
            var type = method.ContainingType;
            if (type is null) return EquatableArray<DiagnosticInfo>.Empty;
            if (!type.GetAttributes().Any(a => a.AttributeClass?.ToDisplayString() == TrainParser.TrainAttributeName))
            {
                Add(DiagnosticDescriptors.LossWithoutTrain, attributeLocation, method.Name, type.Name);
                return diagnostics.ToEquatableArray();
            }
            var first = LossMethods(type)[0];
            if (!SymbolEqualityComparer.Default.Equals(first, method))
                Add(DiagnosticDescriptors.SecondLossMethod, attributeLocation, type.Name, first.Name);
            if (SignatureProblem(method, cancellation) is { } problem)
                Add(DiagnosticDescriptors.InvalidLossMethod, problem.Location, method.Name, problem.Text);
            return diagnostics.ToEquatableArray();
        }

        /// <summary>The class's [Loss] methods in source order (file, then position).</summary>
        private static List<IMethodSymbol> LossMethods(INamedTypeSymbol type) => type.GetMembers()
            .OfType<IMethodSymbol>()
            .Where(m => m.GetAttributes().Any(a => a.AttributeClass?.ToDisplayString() == LossAttributeName))
            .OrderBy(m => m.Locations.FirstOrDefault()?.SourceTree?.FilePath ?? "", System.StringComparer.Ordinal)
            .ThenBy(m => m.Locations.FirstOrDefault()?.SourceSpan.Start ?? 0)
            .ToList();

        /// <summary>What is wrong with the signature, and the token to put it on; null when it is right.</summary>
        private static (string Text, Location? Location)? SignatureProblem(IMethodSymbol method, CancellationToken cancellation)
        {
            var syntax = method.DeclaringSyntaxReferences.FirstOrDefault()?.GetSyntax(cancellation) as MethodDeclarationSyntax;
            var name = method.Locations.FirstOrDefault();
            if (!method.IsStatic)
                return ("it is not static (the trainer calls it without an instance)", name);
            if (method.IsGenericMethod)
                return ("it is generic", syntax?.TypeParameterList?.GetLocation() ?? name);
            if (!IsTensor(method.ReturnType) || method.ReturnsByRef || method.ReturnsByRefReadonly)
                return ($"it returns '{method.ReturnType.ToDisplayString()}'", syntax?.ReturnType.GetLocation() ?? name);
            if (method.Parameters.Length != 2)
                return ($"it takes {method.Parameters.Length} parameter{(method.Parameters.Length == 1 ? "" : "s")}", syntax?.ParameterList.GetLocation() ?? name);
            foreach (var parameter in method.Parameters)
            {
                var parameterSyntax = parameter.DeclaringSyntaxReferences.FirstOrDefault()?.GetSyntax(cancellation) as ParameterSyntax;
                if (!IsTensor(parameter.Type))
                    return ($"parameter '{parameter.Name}' is '{parameter.Type.ToDisplayString()}'", parameterSyntax?.Type?.GetLocation() ?? name);
                if (parameter.RefKind != RefKind.None)
                    return ($"parameter '{parameter.Name}' is passed by reference", parameterSyntax?.GetLocation() ?? name);
            }
            return null;
        }

        /// <summary>TorchSharp's <c>torch.Tensor</c>, nullable annotation or not.</summary>
        private static bool IsTensor(ITypeSymbol type) =>
            type is INamedTypeSymbol { Name: "Tensor", ContainingType: { Name: "torch", ContainingType: null, ContainingNamespace: { Name: "TorchSharp", ContainingNamespace.IsGlobalNamespace: true } } };
    }
}
