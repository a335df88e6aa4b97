namespace ModelDsl.Generators.Parsing
{
    /// <summary>
    /// Reads a hand-written <c>forward</c> for the two ways it can defeat what the runtime does to its layers:
    /// <list type="bullet">
    /// <item>MD0017: <c>Layer.forward(x)</c> skips the layer's hooks, and pruning recomputes the masked weight in a
    /// forward pre-hook, so fine-tuning a pruned layer backpropagates through a stale product (PyTorch's
    /// <c>module(x)</c> is TorchSharp's <c>call</c>).</item>
    /// <item>MD0016: with <c>[Quantize]</c> declared, every Linear layer's slot gets a <c>DynamicQuantizedLinear</c>
    /// after training, and the typed property (a <c>Linear</c>) then throws. <c>GetLayer(nameof(Layer))</c> reads the
    /// slot, so the forward runs whatever the pass put there.</item>
    /// <item>MD0035: the typed property of a <c>[Block(Repeat = n)]</c> holds its first copy only; the slot,
    /// <c>GetLayer(nameof(Block))</c>, runs all n.</item>
    /// </list>
    /// Only the body of the one-input <c>forward</c> itself is read; helpers it calls are not followed.
    /// </summary>
    internal static class ForwardReader
    {
        /// <summary>
        /// Reports MD0017, and MD0016 when <paramref name="quantizeAttribute"/> (the [Quantize] text) is given. Returns
        /// the Linear layers (partial properties) the forward reads through their typed properties, which a composing
        /// model's [Quantize] would break too (MD0018).
        /// </summary>
        public static List<string> Check(INamedTypeSymbol type, Compilation compilation, IReadOnlyList<LayerSpec> layers, string? quantizeAttribute,
            Action<DiagnosticDescriptor, Location?, string[]> report, CancellationToken cancellation)
        {
            var typedLinearReads = new List<string>();
            var byName = layers.ToDictionary(l => l.MemberName, StringComparer.Ordinal);
            var forwards = type.GetMembers("forward").OfType<IMethodSymbol>()
                .Where(m => !m.IsStatic && !m.IsImplicitlyDeclared && m.Parameters.Length == 1)
                .SelectMany(m => m.DeclaringSyntaxReferences)
                .Select(r => r.GetSyntax(cancellation))
                .OfType<MethodDeclarationSyntax>();
            foreach (var method in forwards)
            {
                SyntaxNode? body = (SyntaxNode?)method.Body ?? method.ExpressionBody;
                if (body is null) continue;
                var semantic = compilation.GetSemanticModel(method.SyntaxTree);
                foreach (var node in body.DescendantNodes().OfType<ExpressionSyntax>())
                {
                    cancellation.ThrowIfCancellationRequested();
                    // The expression that names a layer: 'Hidden' or 'this.Hidden' (not the 'Hidden' inside 'this.Hidden').
                    if (node is not (IdentifierNameSyntax or MemberAccessExpressionSyntax { Expression: ThisExpressionSyntax })) continue;
                    if (node is IdentifierNameSyntax && node.Parent is MemberAccessExpressionSyntax outer && outer.Name == node) continue;
                    // nameof(Hidden) names the layer without reading it (GetLayer(nameof(Hidden)) is the fix itself).
                    if (node.Ancestors().OfType<InvocationExpressionSyntax>().Any(i => i.Expression is IdentifierNameSyntax { Identifier.ValueText: "nameof" })) continue;
                    var symbol = semantic.GetSymbolInfo(node, cancellation).Symbol;
                    if (symbol is not (IPropertySymbol or IFieldSymbol)) continue;
                    if (!SymbolEqualityComparer.Default.Equals(symbol.ContainingType, type) || !byName.TryGetValue(symbol.Name, out var layer)) continue;

                    var invokedMember = node.Parent is MemberAccessExpressionSyntax access && access.Expression == node && access.Parent is InvocationExpressionSyntax invocation && invocation.Expression == access
                        ? access : null;
                    // A merge has no hooks and no parameters: its forward(a, b) is the way to call it by hand.
                    if (invokedMember?.Name.Identifier.ValueText == "forward" && !layer.Kind.IsMerge)
                        report(DiagnosticDescriptors.LayerCalledThroughForward, invokedMember.Name.GetLocation(), new[] { node.ToString() });

                    // [Block(Repeat = n)]: the typed property is the first copy; the slot runs all n in sequence.
                    if (layer.Args.Own is BlockArguments { Repeat: > 1 } block && !layer.IsField)
                        report(DiagnosticDescriptors.RepeatedBlockReadThroughProperty, node.GetLocation(),
                            new[] { layer.MemberName, block.Repeat.ToString(System.Globalization.CultureInfo.InvariantCulture) });

                    // [Quantize] swaps Linear layers and the modules of [LSTM]/[GRU] layers; their typed properties then throw.
                    bool recurrent = layer.Kind.Recurrent;
                    bool replaced = layer.Kind.QuantizeReplacesModule && !layer.IsField;
                    if (replaced && !typedLinearReads.Contains(layer.MemberName))
                        typedLinearReads.Add(layer.MemberName);
                    if (quantizeAttribute is not null && replaced)
                    {
                        string slot = $"GetLayer(nameof({layer.MemberName}))";
                        var called = invokedMember is not null && invokedMember.Name.Identifier.ValueText is "forward" or "call"
                            ? ((InvocationExpressionSyntax)invokedMember.Parent!).ArgumentList : null;
                        string instead = recurrent
                            ? $"{slot}.call({called?.Arguments.FirstOrDefault()?.ToString() ?? "x"}) (the output sequence only, from zero states: the slot passes no states in or out)"
                            : called is not null
                                ? $"{slot}.call{called}"
                                : $"{slot} (a Module<Tensor, Tensor>: a Linear before the pass, a DynamicQuantizedLinear after it)";
                        report(DiagnosticDescriptors.ReplacedLayerReadThroughProperty, node.GetLocation(), new[] { layer.MemberName, quantizeAttribute, layer.KindName, instead });
                    }
                }
            }
            return typedLinearReads;
        }
    }
}
