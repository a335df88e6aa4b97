using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text;

namespace ModelDsl.Generators.Parsing
{
    /// <summary>
    /// A layer member's attributes read from syntax, so that a full run does not have Roslyn bind every layer attribute
    /// (<see cref="ISymbol.GetAttributes"/> binds each one's constructor and arguments, which costs about what the whole
    /// System.Text.Json generator costs). Which type an attribute name means is still Roslyn's answer, asked once per
    /// compilation for each name in each scope (the usings, namespaces and containing types around it); the arguments
    /// are read from syntax where the syntax alone settles them: literals (with a sign), <c>nameof</c> of the model's own
    /// member, <c>new[] { ... }</c> of integers and named property arguments. Anything else — a constant from elsewhere,
    /// a cast, an argument by parameter name, an unknown or ambiguous name, a constructor the arguments do not pick out
    /// alone — returns null and the caller binds the member's attributes as before.
    /// </summary>
    internal static class LayerAttributeSyntax
    {
        /// <summary>What the member's attributes say about its layer, as the bound attributes would.</summary>
        internal sealed class Layer
        {
            /// <summary>How many of the member's attributes are layer attributes.</summary>
            public int Count;
            /// <summary>The first layer attribute's class, its syntax and its arguments (when <see cref="Count"/> is 1).</summary>
            public INamedTypeSymbol? AttributeClass;
            public AttributeSyntax? Syntax;
            public LayerAttributeReader? Reader;
        }

        /// <summary>The member's layer attributes from syntax, or null when only binding can tell (the caller binds).</summary>
        public static Layer? TryRead(ISymbol member, Compilation compilation, CancellationToken cancellation)
        {
            var references = member.DeclaringSyntaxReferences;
            if (references.Length != 1) return null;
            var node = references[0].GetSyntax(cancellation);
            SyntaxList<AttributeListSyntax> lists;
            if (node is PropertyDeclarationSyntax property) lists = property.AttributeLists;
            else if (node is VariableDeclaratorSyntax { Parent: VariableDeclarationSyntax { Parent: FieldDeclarationSyntax field } }) lists = field.AttributeLists;
            else return null;

            var layer = new Layer();
            foreach (var list in lists)
            {
                // [field: ...], [property: ...]: which symbol gets the attribute is the compiler's business.
                if (list.Target is not null) return null;
                foreach (var attribute in list.Attributes)
                {
                    var type = AttributeTypes.Resolve(compilation, attribute, member.ContainingType, cancellation);
                    if (type is null || !ModelParser.IsAttributeClass(type)) return null;
                    if (!ModelParser.IsLayerAttribute(type)) continue;
                    if (layer.Count++ == 0) (layer.AttributeClass, layer.Syntax) = (type, attribute);
                }
            }
            if (layer.Count == 1)
            {
                layer.Reader = ReadArguments(layer.Syntax!, layer.AttributeClass!, member.ContainingType, cancellation);
                if (layer.Reader is null) return null;
            }
            return layer;
        }

        /// <summary>The arguments, and the one constructor they can call, or null when the syntax does not settle them.</summary>
        private static LayerAttributeReader? ReadArguments(AttributeSyntax syntax, INamedTypeSymbol type, INamedTypeSymbol model, CancellationToken cancellation)
        {
            var positional = new List<ExpressionSyntax>();
            var named = new List<(string Name, ExpressionSyntax Value)>();
            foreach (var argument in syntax.ArgumentList?.Arguments ?? default)
            {
                if (argument.NameColon is not null) return null;
                if (argument.NameEquals is { } equals) named.Add((equals.Name.Identifier.ValueText, argument.Expression));
                else if (named.Count > 0) return null;
                else positional.Add(argument.Expression);
            }

            // The constructor: the one whose parameters the positional arguments fit (as the compiler's overload
            // resolution would find; two that fit, optional or params parameters: let the compiler decide).
            IMethodSymbol? constructor = null;
            ArgumentValue[]? values = null;
            foreach (var candidate in type.InstanceConstructors)
            {
                if (candidate.DeclaredAccessibility != Accessibility.Public) continue;
                if (candidate.Parameters.Any(p => p.IsOptional || p.IsParams)) return null;
                if (candidate.Parameters.Length != positional.Count) continue;
                var read = new ArgumentValue[positional.Count];
                bool fits = true;
                for (int i = 0; i < read.Length && fits; i++)
                    fits = TryValue(positional[i], candidate.Parameters[i].Type, model, cancellation, out read[i]);
                if (!fits) continue;
                if (constructor is not null) return null;
                (constructor, values) = (candidate, read);
            }
            if (constructor is null) return null;

            var arguments = new Dictionary<string, ArgumentValue>(StringComparer.Ordinal);
            for (int i = 0; i < values!.Length; i++) arguments[constructor.Parameters[i].Name] = values[i];
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (name, expression) in named)
            {
                if (!seen.Add(name) || NamedTarget(type, name) is not { } target) return null;
                if (!TryValue(expression, target, model, cancellation, out var value)) return null;
                arguments[name] = value;
            }
            return LayerAttributeReader.FromSyntax(syntax, constructor, arguments);
        }

        /// <summary>The type of the public settable property (or field) a named argument sets, or null.</summary>
        private static ITypeSymbol? NamedTarget(INamedTypeSymbol type, string name)
        {
            for (var t = type; t is not null; t = t.BaseType)
            {
                foreach (var member in t.GetMembers(name))
                {
                    if (member.IsStatic || member.DeclaredAccessibility != Accessibility.Public) return null;
                    return member switch
                    {
                        IPropertySymbol { SetMethod: { DeclaredAccessibility: Accessibility.Public, IsInitOnly: false }, IsIndexer: false } p => p.Type,
                        IFieldSymbol { IsReadOnly: false, IsConst: false } f => f.Type,
                        _ => null,
                    };
                }
            }
            return null;
        }

        /// <summary>
        /// The constant value of <paramref name="expression"/> converted to <paramref name="target"/>, as Roslyn's
        /// <see cref="TypedConstant"/> holds it, where the syntax alone settles it; false otherwise.
        /// </summary>
        private static bool TryValue(ExpressionSyntax expression, ITypeSymbol target, INamedTypeSymbol model, CancellationToken cancellation, out ArgumentValue value)
        {
            value = default;
            if (target is IArrayTypeSymbol { Rank: 1, ElementType.SpecialType: SpecialType.System_Int32 } array)
            {
                InitializerExpressionSyntax? initializer = expression switch
                {
                    ImplicitArrayCreationExpressionSyntax implicitArray => implicitArray.Initializer,
                    ArrayCreationExpressionSyntax { Type: { ElementType: PredefinedTypeSyntax { Keyword.RawKind: (int)SyntaxKind.IntKeyword }, RankSpecifiers.Count: 1 } } explicitArray
                        when explicitArray.Type.RankSpecifiers[0].Sizes.All(s => s is OmittedArraySizeExpressionSyntax) => explicitArray.Initializer,
                    _ => null,
                };
                // An empty new[] { } has no element type (CS0826): binding reports it, so it binds.
                if (initializer is null || (expression is ImplicitArrayCreationExpressionSyntax && initializer.Expressions.Count == 0)) return false;
                var elements = new ArgumentValue[initializer.Expressions.Count];
                for (int i = 0; i < elements.Length; i++)
                {
                    // new[] { ... } takes its element type from the elements: only int literals make it int[].
                    if (Number(initializer.Expressions[i]) is not int element) return false;
                    elements[i] = new ArgumentValue(TypedConstantKind.Primitive, element);
                }
                value = new ArgumentValue(TypedConstantKind.Array, null, elements);
                return true;
            }

            switch (target.SpecialType)
            {
                case SpecialType.System_Int32:
                    if (Number(expression) is not int i) return false;
                    value = new ArgumentValue(TypedConstantKind.Primitive, i);
                    return true;
                case SpecialType.System_Double:
                    object? number = Number(expression);
                    double? d = number switch { int n => n, double n => n, float n => (double)n, _ => null };
                    if (d is null) return false;
                    value = new ArgumentValue(TypedConstantKind.Primitive, d.Value);
                    return true;
                case SpecialType.System_Boolean:
                    if (expression.Kind() is not (SyntaxKind.TrueLiteralExpression or SyntaxKind.FalseLiteralExpression)) return false;
                    value = new ArgumentValue(TypedConstantKind.Primitive, expression.IsKind(SyntaxKind.TrueLiteralExpression));
                    return true;
                case SpecialType.System_String:
                    if (expression.IsKind(SyntaxKind.NullLiteralExpression)) { value = new ArgumentValue(TypedConstantKind.Primitive, null); return true; }
                    if (expression is LiteralExpressionSyntax { Token.Value: string s } && expression.IsKind(SyntaxKind.StringLiteralExpression))
                    {
                        value = new ArgumentValue(TypedConstantKind.Primitive, s);
                        return true;
                    }
                    if (NameOfOwnMember(expression, model, cancellation) is { } name)
                    {
                        value = new ArgumentValue(TypedConstantKind.Primitive, name);
                        return true;
                    }
                    return false;
                default:
                    return false;
            }
        }

        /// <summary>A numeric literal with an optional sign (and parentheses): an int, a double or a float; null otherwise.</summary>
        private static object? Number(ExpressionSyntax expression)
        {
            while (expression is ParenthesizedExpressionSyntax parenthesized) expression = parenthesized.Expression;
            if (expression is PrefixUnaryExpressionSyntax unary && unary.Kind() is SyntaxKind.UnaryMinusExpression or SyntaxKind.UnaryPlusExpression)
            {
                // One sign on a literal; -2147483648 (a uint literal negated) and the like are left to the compiler.
                var operand = unary.Operand;
                while (operand is ParenthesizedExpressionSyntax p) operand = p.Expression;
                if (operand is not LiteralExpressionSyntax) return null;
                bool minus = unary.IsKind(SyntaxKind.UnaryMinusExpression);
                return Number(operand) switch
                {
                    int i => minus ? -i : i,
                    double d => minus ? -d : d,
                    float f => minus ? -f : f,
                    _ => null,
                };
            }
            return expression is LiteralExpressionSyntax literal && literal.IsKind(SyntaxKind.NumericLiteralExpression)
                ? literal.Token.Value switch { int i => i, double d => d, float f => f, _ => null }
                : null;
        }

        /// <summary>
        /// <c>nameof(Member)</c> where the model itself declares <c>Member</c> (in its own syntax) and no member called
        /// <c>nameof</c>: the name. Anything else (another type's member, an unknown name) is bound.
        /// </summary>
        private static string? NameOfOwnMember(ExpressionSyntax expression, INamedTypeSymbol model, CancellationToken cancellation)
        {
            if (expression is not InvocationExpressionSyntax { Expression: IdentifierNameSyntax { Identifier.ValueText: "nameof" } } invocation
                || invocation.ArgumentList.Arguments.Count != 1
                || invocation.ArgumentList.Arguments[0] is not { NameColon: null, RefKindKeyword.RawKind: 0, Expression: IdentifierNameSyntax identifier })
                return null;
            string name = identifier.Identifier.ValueText;
            bool declared = false;
            foreach (var reference in model.DeclaringSyntaxReferences)
            {
                if (reference.GetSyntax(cancellation) is not TypeDeclarationSyntax declaration) return null;
                foreach (var member in declaration.Members)
                {
                    foreach (var declared_ in DeclaredNames(member))
                    {
                        if (declared_ == "nameof") return null;
                        if (declared_ == name) declared = true;
                    }
                }
            }
            return declared ? name : null;
        }

        private static IEnumerable<string> DeclaredNames(MemberDeclarationSyntax member) => member switch
        {
            PropertyDeclarationSyntax p => new[] { p.Identifier.ValueText },
            BaseFieldDeclarationSyntax f => f.Declaration.Variables.Select(v => v.Identifier.ValueText),
            MethodDeclarationSyntax m => new[] { m.Identifier.ValueText },
            BaseTypeDeclarationSyntax t => new[] { t.Identifier.ValueText },
            DelegateDeclarationSyntax d => new[] { d.Identifier.ValueText },
            _ => Array.Empty<string>(),
        };

        /// <summary>
        /// Which type an attribute name means, asked of Roslyn once per compilation for each name in each scope. The
        /// scope is what a name lookup depends on: the usings and namespace declarations around the attribute, the
        /// containing types (by base type, or by name when they declare nested types of their own), and the file when
        /// it declares file-local types.
        /// </summary>
        private static class AttributeTypes
        {
            private static readonly ConditionalWeakTable<Compilation, ConcurrentDictionary<string, INamedTypeSymbol?>> Cache = new();
            private static readonly ConditionalWeakTable<SyntaxTree, object> FileLocalTypes = new();

            public static INamedTypeSymbol? Resolve(Compilation compilation, AttributeSyntax attribute, INamedTypeSymbol containing, CancellationToken cancellation)
            {
                var names = Cache.GetValue(compilation, static _ => new ConcurrentDictionary<string, INamedTypeSymbol?>(StringComparer.Ordinal));
                string key = Key(compilation, attribute, containing);
                if (names.TryGetValue(key, out var type)) return type;
                type = Bind(compilation, attribute, cancellation);
                names.TryAdd(key, type);
                return type;
            }

            private static INamedTypeSymbol? Bind(Compilation compilation, AttributeSyntax attribute, CancellationToken cancellation)
            {
                if (!compilation.ContainsSyntaxTree(attribute.SyntaxTree)) return null;
                var info = compilation.GetSemanticModel(attribute.SyntaxTree).GetSymbolInfo(attribute, cancellation);
                if (info.Symbol is IMethodSymbol { MethodKind: MethodKind.Constructor } constructor) return constructor.ContainingType;
                // Arguments that fit no constructor: the type is still the one the name means.
                var types = info.CandidateSymbols.Select(s => s is IMethodSymbol { MethodKind: MethodKind.Constructor } c ? c.ContainingType : null).Distinct<INamedTypeSymbol?>(SymbolEqualityComparer.Default).ToArray();
                return info.CandidateReason == CandidateReason.OverloadResolutionFailure && types.Length == 1 ? types[0] : null;
            }

            /// <summary>
            /// The scope of the name: the containing types, then the namespace declarations and usings around the
            /// attribute. The names of the namespace declarations are left out when they cannot change the answer: no
            /// namespace on the path declares a using or an extern alias of its own, and none (in any assembly) has a
            /// member called like the attribute (with or without the Attribute suffix). Then the same name resolves
            /// alike in every namespace of the project, and is bound once instead of once per namespace.
            /// </summary>
            private static string Key(Compilation compilation, AttributeSyntax attribute, INamedTypeSymbol containing)
            {
                var scope = Scopes.GetValue(attribute.Parent!.Ancestors().First(n => n is BaseNamespaceDeclarationSyntax or CompilationUnitSyntax), Scope.Of);
                string name = attribute.Name.ToString();
                // The namespaces are asked for the identifier's value ('@Linear' and '\u004Cinear' both name Linear);
                // the key keeps the text as written.
                bool namespacesMatter = scope.WithoutNamespaceNames is null || attribute.Name is not IdentifierNameSyntax identifier
                    || NamespacesDeclare(compilation, containing, identifier.Identifier.ValueText);
                return name + "\u0001" + TypeScope(containing) + (namespacesMatter ? scope.WithNamespaceNames : scope.WithoutNamespaceNames);
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

            /// <summary>Whether a namespace the type is declared in (merged over the compilation's assemblies) has a member called <paramref name="name"/> or <paramref name="name"/>Attribute.</summary>
            private static bool NamespacesDeclare(Compilation compilation, INamedTypeSymbol containing, string name)
            {
                var outermost = containing;
                while (outermost.ContainingType is not null) outermost = outermost.ContainingType;
                for (var ns = outermost.ContainingNamespace; ns is { IsGlobalNamespace: false }; ns = ns.ContainingNamespace)
                {
                    if (compilation.GetCompilationNamespace(ns) is not { } merged) return true;
                    if (merged.GetMembers(name).Any() || merged.GetMembers(name + "Attribute").Any()) return true;
                }
                return false;
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
}
