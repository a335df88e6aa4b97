namespace ModelDsl.Generators.Parsing
{
    /// <summary>
    /// A field or property of a model, as the layer reader needs it: its name, modifiers, type, location, syntax and
    /// attributes. Read from the class's syntax where that settles them (<see cref="Of"/>), so that a full run does not
    /// have Roslyn build the class's member table: that binds every property's type one by one and merges the partial
    /// properties, about a third of the generator's own time over 100 models. The type's name is still Roslyn's answer,
    /// asked once per compilation for each name in each scope (<see cref="ScopedNames"/>). Anything the syntax does
    /// not settle alone falls back to the member symbols, for the whole class.
    /// </summary>
    internal sealed class LayerMember
    {
        private readonly INamedTypeSymbol _containing;
        private ISymbol? _symbol;

        private LayerMember(INamedTypeSymbol containing, string name, ITypeSymbol type, ISymbol? symbol)
        {
            _containing = containing;
            Name = name;
            Type = type;
            _symbol = symbol;
        }

        public string Name { get; }
        public ITypeSymbol Type { get; }
        public bool IsField { get; private set; }
        public bool IsStatic { get; private set; }
        public bool IsIndexer { get; private set; }
        public bool HasSetter { get; private set; }
        /// <summary>abstract, virtual or override.</summary>
        public bool IsOverridable { get; private set; }
        public Accessibility DeclaredAccessibility { get; private set; }
        /// <summary>Where the compiler reports the member: its identifier.</summary>
        public Location? Location { get; private set; }
        /// <summary>The property's declarations (none for a field).</summary>
        public PropertyDeclarationSyntax[] PropertySyntax { get; private set; } = Array.Empty<PropertyDeclarationSyntax>();
        /// <summary>The attribute lists of the member's one declaration; null when it has several.</summary>
        public SyntaxList<AttributeListSyntax>? AttributeLists { get; private set; }

        /// <summary>The member's symbol, for what only binding tells (its attributes when the syntax does not settle them).</summary>
        public ISymbol Symbol => _symbol ??= _containing.GetMembers(Name).First(m => m is IPropertySymbol or IFieldSymbol);

        /// <summary>The class's fields and properties in declaration order, as <see cref="INamespaceOrTypeSymbol.GetMembers()"/> lists them.</summary>
        public static List<LayerMember> Of(INamedTypeSymbol type, Compilation compilation, CancellationToken cancellation) =>
            FromSyntax(type, compilation, cancellation) ?? FromSymbols(type, cancellation);

        /// <summary>
        /// The hand-written <c>forward</c> methods (instance ones): their parameter counts and locations, from syntax
        /// when the class is one declaration without partial or explicitly implemented forwards, else from symbols.
        /// </summary>
        public static List<(int Parameters, Location? Location)> Forwards(INamedTypeSymbol type, CancellationToken cancellation)
        {
            if (SingleDeclaration(type, cancellation) is { } declaration)
            {
                var forwards = new List<(int, Location?)>();
                bool settled = true;
                foreach (var method in declaration.Members.OfType<MethodDeclarationSyntax>())
                {
                    if (method.Identifier.ValueText != "forward") continue;
                    // A partial method's two parts are one symbol; an explicit implementation is named after its interface.
                    if (method.ExplicitInterfaceSpecifier is not null || method.Modifiers.Any(SyntaxKind.PartialKeyword)) { settled = false; break; }
                    if (method.Modifiers.Any(SyntaxKind.StaticKeyword)) continue;
                    forwards.Add((method.ParameterList.Parameters.Count, method.Identifier.GetLocation()));
                }
                if (settled) return forwards;
            }
            return type.GetMembers("forward").OfType<IMethodSymbol>().Where(m => !m.IsStatic && !m.IsImplicitlyDeclared)
                .Select(m => (m.Parameters.Length, m.Locations.FirstOrDefault())).ToList();
        }

        private static ClassDeclarationSyntax? SingleDeclaration(INamedTypeSymbol type, CancellationToken cancellation) =>
            type.DeclaringSyntaxReferences.Length == 1 ? type.DeclaringSyntaxReferences[0].GetSyntax(cancellation) as ClassDeclarationSyntax : null;

        internal static List<LayerMember>? FromSyntax(INamedTypeSymbol type, Compilation compilation, CancellationToken cancellation)
        {
            if (SingleDeclaration(type, cancellation) is not { } declaration) return null;
            var members = new List<LayerMember>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var node in declaration.Members)
            {
                cancellation.ThrowIfCancellationRequested();
                switch (node)
                {
                    case PropertyDeclarationSyntax property:
                    {
                        // An explicit interface implementation is named after the interface; a name declared twice is
                        // one merged symbol (a partial property's two parts) or an error: the symbols tell.
                        if (property.ExplicitInterfaceSpecifier is not null || !names.Add(property.Identifier.ValueText)) return null;
                        if (Resolve(property.Type) is not { } propertyType) return null;
                        var member = new LayerMember(type, property.Identifier.ValueText, propertyType, null)
                        {
                            IsStatic = property.Modifiers.Any(SyntaxKind.StaticKeyword),
                            HasSetter = property.AccessorList?.Accessors.Any(a => a.IsKind(SyntaxKind.SetAccessorDeclaration) || a.IsKind(SyntaxKind.InitAccessorDeclaration)) == true,
                            IsOverridable = property.Modifiers.Any(SyntaxKind.AbstractKeyword) || property.Modifiers.Any(SyntaxKind.VirtualKeyword) || property.Modifiers.Any(SyntaxKind.OverrideKeyword),
                            DeclaredAccessibility = AccessibilityOf(property.Modifiers),
                            Location = property.Identifier.GetLocation(),
                            PropertySyntax = new[] { property },
                            AttributeLists = property.AttributeLists,
                        };
                        members.Add(member);
                        break;
                    }
                    case FieldDeclarationSyntax field:
                    {
                        if (Resolve(field.Declaration.Type) is not { } fieldType) return null;
                        foreach (var variable in field.Declaration.Variables)
                        {
                            if (!names.Add(variable.Identifier.ValueText)) return null;
                            members.Add(new LayerMember(type, variable.Identifier.ValueText, fieldType, null)
                            {
                                IsField = true,
                                IsStatic = field.Modifiers.Any(SyntaxKind.StaticKeyword) || field.Modifiers.Any(SyntaxKind.ConstKeyword),
                                DeclaredAccessibility = AccessibilityOf(field.Modifiers),
                                Location = variable.Identifier.GetLocation(),
                                AttributeLists = field.AttributeLists,
                            });
                        }
                        break;
                    }
                    // Members that are neither fields nor properties (GetMembers lists them; the layer reader skips them).
                    case MethodDeclarationSyntax or ConstructorDeclarationSyntax or DestructorDeclarationSyntax or OperatorDeclarationSyntax
                        or ConversionOperatorDeclarationSyntax or BaseTypeDeclarationSyntax or DelegateDeclarationSyntax
                        or EventDeclarationSyntax or EventFieldDeclarationSyntax:
                        break;
                    // Indexers (properties to the symbols), incomplete members and anything newer: the symbols tell.
                    default:
                        return null;
                }
            }
            return members;

            // A name (bound once per name and scope) or a keyword type (a constant's int, say); anything else (arrays,
            // nullable or tuple types) is left to the symbols.
            ITypeSymbol? Resolve(TypeSyntax syntax) => syntax switch
            {
                NameSyntax name => ScopedNames.ResolveType(compilation, name, type, cancellation),
                PredefinedTypeSyntax predefined when Keyword(predefined.Keyword.Kind()) is { } special => compilation.GetSpecialType(special),
                _ => null,
            };
        }

        internal static List<LayerMember> FromSymbols(INamedTypeSymbol type, CancellationToken cancellation)
        {
            var members = new List<LayerMember>();
            foreach (var symbol in type.GetMembers())
            {
                if (symbol.IsImplicitlyDeclared || symbol is not (IPropertySymbol or IFieldSymbol)) continue;
                var declarations = symbol.DeclaringSyntaxReferences.Select(r => r.GetSyntax(cancellation)).ToArray();
                var property = symbol as IPropertySymbol;
                SyntaxList<AttributeListSyntax>? lists = declarations.Length != 1 ? null : declarations[0] switch
                {
                    PropertyDeclarationSyntax p => p.AttributeLists,
                    VariableDeclaratorSyntax { Parent: VariableDeclarationSyntax { Parent: FieldDeclarationSyntax f } } => f.AttributeLists,
                    _ => null,
                };
                members.Add(new LayerMember(type, symbol.Name, property?.Type ?? ((IFieldSymbol)symbol).Type, symbol)
                {
                    IsField = symbol is IFieldSymbol,
                    IsStatic = symbol.IsStatic,
                    IsIndexer = property?.IsIndexer == true,
                    HasSetter = property?.SetMethod is not null,
                    IsOverridable = symbol.IsAbstract || symbol.IsVirtual || symbol.IsOverride,
                    DeclaredAccessibility = symbol.DeclaredAccessibility,
                    Location = symbol.Locations.FirstOrDefault(),
                    PropertySyntax = declarations.OfType<PropertyDeclarationSyntax>().ToArray(),
                    AttributeLists = lists,
                });
            }
            return members;
        }

        private static SpecialType? Keyword(SyntaxKind keyword) => keyword switch
        {
            SyntaxKind.BoolKeyword => SpecialType.System_Boolean,
            SyntaxKind.ByteKeyword => SpecialType.System_Byte,
            SyntaxKind.IntKeyword => SpecialType.System_Int32,
            SyntaxKind.LongKeyword => SpecialType.System_Int64,
            SyntaxKind.FloatKeyword => SpecialType.System_Single,
            SyntaxKind.DoubleKeyword => SpecialType.System_Double,
            SyntaxKind.StringKeyword => SpecialType.System_String,
            SyntaxKind.ObjectKeyword => SpecialType.System_Object,
            _ => null,
        };

        /// <summary>A class member's declared accessibility from its modifiers (private when none is written).</summary>
        private static Accessibility AccessibilityOf(SyntaxTokenList modifiers)
        {
            bool isPublic = false, isPrivate = false, isProtected = false, isInternal = false;
            foreach (var modifier in modifiers)
            {
                switch (modifier.Kind())
                {
                    case SyntaxKind.PublicKeyword: isPublic = true; break;
                    case SyntaxKind.PrivateKeyword: isPrivate = true; break;
                    case SyntaxKind.ProtectedKeyword: isProtected = true; break;
                    case SyntaxKind.InternalKeyword: isInternal = true; break;
                }
            }
            return isPublic ? Accessibility.Public
                : isProtected && isInternal ? Accessibility.ProtectedOrInternal
                : isProtected && isPrivate ? Accessibility.ProtectedAndInternal
                : isProtected ? Accessibility.Protected
                : isInternal ? Accessibility.Internal
                : Accessibility.Private;
        }
    }
}
