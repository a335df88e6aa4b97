namespace ModelDsl.Generators.Parsing
{
    /// <summary>
    /// A layer member's attributes read from syntax, so that a full run does not have Roslyn bind every layer attribute
    /// (<see cref="ISymbol.GetAttributes"/> binds each one's constructor and arguments, which costs about what the whole
    /// System.Text.Json generator costs). Which type an attribute name means is still Roslyn's answer, asked once per
    /// compilation for each name in each scope (<see cref="ScopedNames"/>); the arguments
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

        /// <summary>
        /// A member's layer attributes from its attribute lists (<see cref="LayerMember.AttributeLists"/>; null when it
        /// has several declarations), or null when only binding can tell (the caller binds).
        /// </summary>
        public static Layer? TryRead(SyntaxList<AttributeListSyntax>? attributeLists, INamedTypeSymbol containing, Compilation compilation, CancellationToken cancellation)
        {
            if (attributeLists is not { } lists) return null;
            var layer = new Layer();
            foreach (var list in lists)
            {
                // [field: ...], [property: ...]: which symbol gets the attribute is the compiler's business.
                if (list.Target is not null) return null;
                foreach (var attribute in list.Attributes)
                {
                    var type = ScopedNames.ResolveAttribute(compilation, attribute, containing, cancellation);
                    if (type is null || !ModelParser.IsAttributeClass(type)) return null;
                    if (!ModelParser.IsLayerAttribute(type)) continue;
                    if (layer.Count++ == 0) (layer.AttributeClass, layer.Syntax) = (type, attribute);
                }
            }
            if (layer.Count == 1)
            {
                layer.Reader = ReadArguments(layer.Syntax!, layer.AttributeClass!, containing, cancellation);
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
    }
}
