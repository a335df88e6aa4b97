using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text;

namespace ModelDsl.Generators.Parsing
{
    /// <summary>
    /// Which type a name written in a model means (an attribute's name, a member's type), asked of Roslyn once per
    /// compilation for each name in each scope instead of once per use. The scope is what a name lookup depends on:
    /// the usings and namespace declarations around the name, the containing types (by base type, or by name when they
    /// declare nested types of their own), and the file when it declares file-local types.
    /// </summary>
    internal static class ScopedNames
    {
        private static readonly ConditionalWeakTable<Compilation, State> States = new();
        private static readonly ConditionalWeakTable<SyntaxTree, object> FileLocalTypes = new();

        /// <summary>What one compilation has answered: types by name and scope, and which namespaces declare a name.</summary>
        private sealed class State
        {
            // (kind, name as written, containing types, usings and namespaces): no string is built per lookup.
            public readonly ConcurrentDictionary<(char Kind, string Name, string Types, string Scope), ITypeSymbol?> Names = new();
            public readonly ConcurrentDictionary<INamespaceSymbol, ConcurrentDictionary<string, bool>> NamespacesDeclare = new(SymbolEqualityComparer.Default);
        }

        /// <summary>The attribute class an attribute's name means (null when unknown, ambiguous or not settled).</summary>
        public static INamedTypeSymbol? ResolveAttribute(Compilation compilation, AttributeSyntax attribute, INamedTypeSymbol containing, CancellationToken cancellation)
        {
            var state = States.GetValue(compilation, static _ => new State());
            var key = Key(state, compilation, 'A', attribute.Name, attribute.Parent!, containing);
            if (state.Names.TryGetValue(key, out var type)) return type as INamedTypeSymbol;
            var bound = BindAttribute(compilation, attribute, cancellation);
            state.Names.TryAdd(key, bound);
            return bound;
        }

        /// <summary>The type a member's type name means (null when unknown, ambiguous or an error type).</summary>
        public static ITypeSymbol? ResolveType(Compilation compilation, NameSyntax name, INamedTypeSymbol containing, CancellationToken cancellation)
        {
            var state = States.GetValue(compilation, static _ => new State());
            var key = Key(state, compilation, 'T', name, name, containing);
            if (state.Names.TryGetValue(key, out var type)) return type;
            type = BindType(compilation, name, cancellation);
            state.Names.TryAdd(key, type);
            return type;
        }

        private static ITypeSymbol? BindType(Compilation compilation, NameSyntax type, CancellationToken cancellation)
        {
            if (!compilation.ContainsSyntaxTree(type.SyntaxTree)) return null;
            return compilation.GetSemanticModel(type.SyntaxTree).GetSymbolInfo(type, cancellation).Symbol is ITypeSymbol { TypeKind: not TypeKind.Error } symbol
                ? symbol.WithNullableAnnotation(NullableAnnotation.None)
                : null;
        }

        private static INamedTypeSymbol? BindAttribute(Compilation compilation, AttributeSyntax attribute, CancellationToken cancellation)
        {
            if (!compilation.ContainsSyntaxTree(attribute.SyntaxTree)) return null;
            var info = compilation.GetSemanticModel(attribute.SyntaxTree).GetSymbolInfo(attribute, cancellation);
            if (info.Symbol is IMethodSymbol { MethodKind: MethodKind.Constructor } constructor) return constructor.ContainingType;
            // Arguments that fit no constructor: the type is still the one the name means.
            var types = info.CandidateSymbols.Select(s => s is IMethodSymbol { MethodKind: MethodKind.Constructor } c ? c.ContainingType : null).Distinct<INamedTypeSymbol?>(SymbolEqualityComparer.Default).ToArray();
            return info.CandidateReason == CandidateReason.OverloadResolutionFailure && types.Length == 1 ? types[0] : null;
        }

        /// <summary>
        /// The scope of the name: the containing types, then the namespace declarations and usings around it. The
        /// names of the namespace declarations are left out when they cannot change the answer: no namespace on the
        /// path declares a using or an extern alias of its own, and none (in any assembly) has a member called like
        /// the name (with or without the Attribute suffix). Then the same name resolves
        /// alike in every namespace of the project, and is bound once instead of once per namespace.
        /// </summary>
        private static (char, string, string, string) Key(State state, Compilation compilation, char kind, NameSyntax name, SyntaxNode at, INamedTypeSymbol containing)
        {
            var scope = Scopes.GetValue(at.Ancestors().First(n => n is BaseNamespaceDeclarationSyntax or CompilationUnitSyntax), Scope.Of);
            // The namespaces are asked for the identifier's value ('@Linear' and '\u004Cinear' both name Linear);
            // the key keeps the text as written.
            bool namespacesMatter = scope.WithoutNamespaceNames is null || name is not IdentifierNameSyntax identifier
                || NamespacesDeclare(state, compilation, containing, identifier.Identifier.ValueText);
            // An identifier's text is the token's own string; a qualified name is written out.
            string text = name is IdentifierNameSyntax simple ? simple.Identifier.Text : name.ToString();
            return (kind, text, TypeScope(containing), (namespacesMatter ? scope.WithNamespaceNames : scope.WithoutNamespaceNames)!);
        }

        // Nested types (the type's own, and inherited ones through its base) are in scope for the name.
        private static string TypeScope(INamedTypeSymbol containing) =>
            TypeScopes.GetValue(containing, static type =>
            {
                var key = new StringBuilder();
                for (var t = type; t is not null; t = t.ContainingType)
                {
                    if (t.GetTypeMembers().Length > 0 || t.TypeParameters.Length > 0) key.Append(t.ToDisplayString());
                    key.Append(':').Append(t.BaseType?.ToDisplayString()).Append('\u0001');
                }
                return key.ToString();
            });

        /// <summary>
        /// Whether a namespace the type is declared in (merged over the compilation's assemblies) has a member called
        /// <paramref name="name"/> or <paramref name="name"/>Attribute; asked once per namespace and name.
        /// </summary>
        private static bool NamespacesDeclare(State state, Compilation compilation, INamedTypeSymbol containing, string name)
        {
            var outermost = containing;
            while (outermost.ContainingType is not null) outermost = outermost.ContainingType;
            var names = state.NamespacesDeclare.GetOrAdd(outermost.ContainingNamespace, static _ => new ConcurrentDictionary<string, bool>(StringComparer.Ordinal));
            if (names.TryGetValue(name, out bool declares)) return declares;
            declares = false;
            for (var ns = outermost.ContainingNamespace; ns is { IsGlobalNamespace: false } && !declares; ns = ns.ContainingNamespace)
                declares = compilation.GetCompilationNamespace(ns) is not { } merged || merged.GetMembers(name).Any() || merged.GetMembers(name + "Attribute").Any();
            names.TryAdd(name, declares);
            return declares;
        }

        private static readonly ConditionalWeakTable<SyntaxNode, Scope> Scopes = new();
        private static readonly ConditionalWeakTable<INamedTypeSymbol, string> TypeScopes = new();

        /// <summary>The namespace declarations and usings from a namespace declaration (or file) outwards, as text, with and without the namespaces' names.</summary>
        private sealed class Scope
        {
            public string WithNamespaceNames = "";
            /// <summary>Null when a namespace declaration on the path has usings or extern aliases of its own (they resolve inside it).</summary>
            public string? WithoutNamespaceNames;

            public static Scope Of(SyntaxNode innermost)
            {
                var named = new StringBuilder();
                var unnamed = new StringBuilder();
                bool namespaceUsings = false;
                for (var node = innermost; node is not null; node = node.Parent)
                {
                    if (node is BaseNamespaceDeclarationSyntax ns)
                    {
                        named.Append(ns.Name.ToString()).Append('{');
                        foreach (var e in ns.Externs) named.Append(e.ToString()).Append(';');
                        foreach (var u in ns.Usings) named.Append(u.ToString()).Append(';');
                        named.Append('\u0001');
                        unnamed.Append("{\u0001");
                        namespaceUsings |= ns.Externs.Count > 0 || ns.Usings.Count > 0;
                    }
                    else if (node is CompilationUnitSyntax unit)
                    {
                        var file = new StringBuilder();
                        foreach (var e in unit.Externs) file.Append(e.ToString()).Append(';');
                        foreach (var u in unit.Usings) file.Append(u.ToString()).Append(';');
                        if (HasFileLocalTypes(unit)) file.Append('\u0001').Append(unit.SyntaxTree.FilePath);
                        named.Append(file);
                        unnamed.Append(file);
                    }
                }
                return new Scope { WithNamespaceNames = named.ToString(), WithoutNamespaceNames = namespaceUsings ? null : unnamed.ToString() };
            }
        }

        private static bool HasFileLocalTypes(CompilationUnitSyntax unit) =>
            FileLocalTypes.GetValue(unit.SyntaxTree, static tree => tree.GetRoot()
                .DescendantNodes(n => n is CompilationUnitSyntax or BaseNamespaceDeclarationSyntax or TypeDeclarationSyntax)
                .OfType<BaseTypeDeclarationSyntax>().Any(t => t.Modifiers.Any(SyntaxKind.FileKeyword)) ? Boxed.True : Boxed.False) == Boxed.True;

        private static class Boxed
        {
            public static readonly object True = new();
            public static readonly object False = new();
        }
    }
}
