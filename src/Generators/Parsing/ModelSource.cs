using System.Runtime.CompilerServices;
using System.Text;

namespace ModelDsl.Generators.Parsing
{
    /// <summary>
    /// The pipeline's first stage for a [Model] class: everything its parse reads, as text, so that the parse (which
    /// reads layer attributes from syntax, binding only as a fallback) runs again only when one of those inputs changed. Roslyn re-runs the transform of
    /// <c>ForAttributeWithMetadataName</c> for every model whenever the compilation changes; this stage is all that
    /// re-runs for an unchanged model, and it reads syntax only (plus a few facts computed once per compilation).
    /// </summary>
    /// <remarks>
    /// <para>
    /// Equal when the parse would read the same inputs: each declaration of the class (file, position, full text, and
    /// the usings and namespaces around it, with the file's language version, the project's preprocessor symbols and
    /// the file's own #define/#undef), the global
    /// usings of the compilation, its metadata references (by identity) and whether it has TorchSharp and the
    /// ModelDsl runtime. A model whose syntax names a type declared in the compilation's own sources (a composed
    /// model, a base class, a class of constants, a helper) or that is nested in another type can depend on other
    /// files: it is never equal, and is parsed on every run, as before.
    /// </para>
    /// <para>
    /// The parse needs the compiler's objects of the current run. They are held weakly (the symbol and the
    /// compilation, both alive while the driver runs on that compilation), and excluded from equality: when the
    /// source equals the previous run's, the parse step is cached and never looks at them; when it differs, the
    /// value is this run's, so they are the current compilation's. The pipeline thus pins no compilation.
    /// </para>
    /// <para>
    /// The text is copied from the files' texts (not rebuilt token by token); whether the class names a source type is
    /// read on the first comparison with another run's source, from the declarations (held weakly) and a copy of
    /// the compilation's type and namespace names. A command-line build, whose driver runs once, compares nothing and
    /// never walks the tokens (the two were about a fifth of a full run over 100 models).
    /// </para>
    /// </remarks>
    internal sealed class ModelSource : IEquatable<ModelSource>
    {
        // The key's text: what the parse reads, as written (see the remarks).
        private readonly string _text;
        private readonly CompilationFacts? _facts;
        // Never equal to another run's source (only to itself): nested in another type, global usings that name a
        // source type, or a key that could not be read.
        private readonly bool _neverEqual;
        // Whether the class's syntax names a type declared in the sources (then never equal either); read on first
        // comparison, from tokens: only a comparison with another run's source needs it, so a build's one run (a fresh
        // driver) never pays for the token walk. The declarations are held weakly for it.
        private readonly WeakReference<SyntaxNode>[] _declarations;
        private int _namesSourceType; // 0: not read yet, 1: no, 2: yes
        private readonly WeakReference<INamedTypeSymbol> _type;
        private readonly WeakReference<Compilation> _compilation;

        private ModelSource(string text, CompilationFacts? facts, bool neverEqual, SyntaxNode[] declarations, INamedTypeSymbol type, Compilation compilation,
            SyntaxNode target)
        {
            _text = text;
            _facts = facts;
            _neverEqual = neverEqual;
            _declarations = declarations.Select(d => new WeakReference<SyntaxNode>(d)).ToArray();
            _type = new WeakReference<INamedTypeSymbol>(type);
            _compilation = new WeakReference<Compilation>(compilation);
            Name = type.Name;
            TargetPath = target.SyntaxTree.FilePath;
            TargetSpan = target.Span;
        }

        /// <summary>The class's name (for the message of a failure).</summary>
        public string Name { get; }
        /// <summary>The file and span of the declaration that carries [Model].</summary>
        public string TargetPath { get; }
        /// <summary>See <see cref="TargetPath"/>.</summary>
        public Microsoft.CodeAnalysis.Text.TextSpan TargetSpan { get; }

        /// <summary>Reads the class's syntax; binds nothing (the symbol is the one <c>ForAttributeWithMetadataName</c> already has).</summary>
        public static ModelSource? From(GeneratorAttributeSyntaxContext context, CancellationToken cancellation)
        {
            if (context.TargetSymbol is not INamedTypeSymbol type) return null;
            var compilation = context.SemanticModel.Compilation;
            try
            {
                var declarations = type.DeclaringSyntaxReferences.Select(r => r.GetSyntax(cancellation)).ToArray();
                var facts = CompilationFacts.Of(compilation);
                return new ModelSource(Text(declarations, facts, cancellation), facts, facts.GlobalUsingsNameSourceType || type.ContainingType is not null,
                    declarations, type, compilation, context.TargetNode);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // The generator never throws: without a key the model is parsed on every run (and the parse reports
                // what it finds).
                return new ModelSource("", null, neverEqual: true, Array.Empty<SyntaxNode>(), type, compilation, context.TargetNode);
            }
        }

        private static string Text(SyntaxNode[] declarations, CompilationFacts facts, CancellationToken cancellation)
        {
            var syntax = new StringBuilder(facts.Key).Append('\u0003');
            foreach (var node in declarations)
            {
                cancellation.ThrowIfCancellationRequested();
                var tree = node.SyntaxTree;
                syntax.Append(tree.FilePath).Append('\u0001');
                if (tree.Options is CSharpParseOptions options)
                    syntax.Append(options.LanguageVersion).Append(' ').Append(string.Join(",", options.PreprocessorSymbolNames));
                // A file's #define/#undef (all before its first token) decide which #if branches of the class are live;
                // the class's text alone is the same whichever branch is active.
                foreach (var trivia in tree.GetRoot(cancellation).GetFirstToken(includeZeroWidth: true).LeadingTrivia)
                    if (trivia.IsKind(SyntaxKind.DefineDirectiveTrivia) || trivia.IsKind(SyntaxKind.UndefDirectiveTrivia))
                        syntax.Append(trivia.ToString().Trim()).Append(' ');
                syntax.Append('\u0001').Append(node.FullSpan.Start).Append('\u0001');
                // The usings and namespaces around the declaration decide what its names mean.
                foreach (var scope in node.Ancestors())
                {
                    SyntaxList<UsingDirectiveSyntax> usings;
                    SyntaxList<ExternAliasDirectiveSyntax> externs;
                    if (scope is BaseNamespaceDeclarationSyntax ns)
                    {
                        syntax.Append("namespace ").Append(ns.Name.ToString()).Append('\u0001');
                        (usings, externs) = (ns.Usings, ns.Externs);
                    }
                    else if (scope is CompilationUnitSyntax unit) (usings, externs) = (unit.Usings, unit.Externs);
                    else continue;
                    foreach (var e in externs) syntax.Append(e.ToString()).Append('\u0001');
                    foreach (var u in usings) syntax.Append(u.ToString()).Append('\u0001');
                }
                // The class's text, copied from the file's text (what ToFullString would build token by token).
                syntax.Append(tree.GetText(cancellation).ToString(node.FullSpan)).Append('\u0002');
            }
            return syntax.ToString();
        }

        /// <summary>
        /// Whether the class (or a using around it) names a type or namespace declared in this source's compilation, read
        /// from <paramref name="declarations"/>: this source's own, or those of a source with the same text (the same
        /// tokens), and this source's facts. Read once.
        /// </summary>
        private bool NamesSourceType(SyntaxNode[] declarations)
        {
            if (_namesSourceType == 0)
            {
                bool names = false;
                foreach (var node in declarations)
                {
                    foreach (var scope in node.Ancestors())
                    {
                        var usings = scope is BaseNamespaceDeclarationSyntax ns ? ns.Usings : scope is CompilationUnitSyntax unit ? unit.Usings : default;
                        foreach (var u in usings) names |= NamesSourceType(u, _facts!.TypeNames);
                    }
                    // In the class itself a name may also mean a namespace of the sources (e.g. one named like an attribute).
                    names |= NamesSourceType(node, _facts!.TypeNames, _facts.NamespaceNames);
                }
                _namesSourceType = names ? 2 : 1; // the same value whichever thread reads it first
            }
            return _namesSourceType == 2;
        }

        /// <summary>The declarations, while their syntax trees are alive (the current compilation's always are).</summary>
        private SyntaxNode[]? Declarations()
        {
            var nodes = new SyntaxNode[_declarations.Length];
            for (int i = 0; i < nodes.Length; i++)
                if (!_declarations[i].TryGetTarget(out nodes[i]!)) return null;
            return nodes;
        }

        /// <summary>This run's symbol and compilation; false only if they were collected (not while the driver runs on them).</summary>
        public bool TryGet(out INamedTypeSymbol type, out Compilation compilation)
        {
            compilation = null!;
            return _type.TryGetTarget(out type!) && _compilation.TryGetTarget(out compilation!);
        }

        /// <summary>
        /// The [Model] attribute written on the declaration this source is for (what <c>ForAttributeWithMetadataName</c>
        /// hands its transform); attributes are bound once per symbol, so this binds the class's attributes at most once.
        /// </summary>
        public AttributeData? ModelAttribute(INamedTypeSymbol type)
        {
            AttributeData? first = null;
            foreach (var attribute in type.GetAttributes())
            {
                if (attribute.AttributeClass?.ToDisplayString() != ModelParser.ModelAttributeName) continue;
                first ??= attribute;
                if (attribute.ApplicationSyntaxReference is { } r && r.SyntaxTree.FilePath == TargetPath && TargetSpan.Contains(r.Span))
                    return attribute;
            }
            return first;
        }

        /// <summary>
        /// Whether an identifier under <paramref name="node"/> that refers to something (not one a declaration
        /// introduces, nor a named argument's name) is one of <paramref name="sourceTypeNames"/>, the names of types (or
        /// namespaces) declared in the compilation's sources; an attribute's name counts with and without its Attribute
        /// suffix. The model's own name counts too where it is used, not declared: it may mean another model of that name.
        /// <paramref name="sourceNamespaceNames"/>, when given, counts like <paramref name="sourceTypeNames"/> (one walk for both).
        /// </summary>
        private static bool NamesSourceType(SyntaxNode node, ICollection<string> sourceTypeNames, ICollection<string>? sourceNamespaceNames = null)
        {
            if (sourceTypeNames.Count == 0 && (sourceNamespaceNames is null || sourceNamespaceNames.Count == 0)) return false;
            foreach (var token in node.DescendantTokens())
            {
                if (!token.IsKind(SyntaxKind.IdentifierToken) || IsDeclaredName(token)) continue;
                string name = token.ValueText;
                if (sourceTypeNames.Contains(name) || sourceNamespaceNames?.Contains(name) == true) return true;
                if (IsInAttributeName(token) && (sourceTypeNames.Contains(name + "Attribute") || sourceNamespaceNames?.Contains(name + "Attribute") == true)) return true;
            }
            return false;
        }

        // The identifier a declaration introduces (a type, member, parameter or variable) or a named argument's name.
        private static bool IsDeclaredName(SyntaxToken token) => token.Parent switch
        {
            BaseTypeDeclarationSyntax t => t.Identifier == token,
            DelegateDeclarationSyntax d => d.Identifier == token,
            ConstructorDeclarationSyntax c => c.Identifier == token,
            DestructorDeclarationSyntax d => d.Identifier == token,
            PropertyDeclarationSyntax p => p.Identifier == token,
            MethodDeclarationSyntax m => m.Identifier == token,
            EventDeclarationSyntax e => e.Identifier == token,
            VariableDeclaratorSyntax v => v.Identifier == token,
            ParameterSyntax p => p.Identifier == token,
            TypeParameterSyntax t => t.Identifier == token,
            IdentifierNameSyntax { Parent: NameEqualsSyntax or NameColonSyntax } => true,
            _ => false,
        };

        private static bool IsInAttributeName(SyntaxToken token)
        {
            for (var n = token.Parent; n is NameSyntax; n = n.Parent)
                if (n.Parent is AttributeSyntax attribute && attribute.Name == n) return true;
            return false;
        }

        /// <inheritdoc />
        public bool Equals(ModelSource? other)
        {
            if (ReferenceEquals(this, other)) return true;
            if (other is null || _neverEqual || other._neverEqual || !string.Equals(_text, other._text, StringComparison.Ordinal)) return false;
            try
            {
                // The same text is the same tokens: either source's declarations tell both (the other run's trees may
                // have been collected; this run's are alive).
                var declarations = Declarations() ?? other.Declarations();
                return declarations is not null && !NamesSourceType(declarations) && !other.NamesSourceType(declarations);
            }
            catch (Exception)
            {
                return false; // parsed again: never a stale model
            }
        }

        /// <inheritdoc />
        public override bool Equals(object? obj) => Equals(obj as ModelSource);

        /// <inheritdoc />
        public override int GetHashCode() => _neverEqual ? RuntimeHelpers.GetHashCode(this) : StringComparer.Ordinal.GetHashCode(_text);

        /// <summary>What every model's parse reads from the compilation as a whole, computed once per compilation.</summary>
        private sealed class CompilationFacts
        {
            private static readonly ConditionalWeakTable<Compilation, CompilationFacts> Cache = new();
            // Metadata references get a number each, by identity (a new reference object is a new number).
            private static readonly ConditionalWeakTable<MetadataReference, object> ReferenceIds = new();
            private static int _nextReferenceId;

            public string Key = "";
            public ICollection<string> TypeNames = Array.Empty<string>();
            public ICollection<string> NamespaceNames = Array.Empty<string>();
            public bool GlobalUsingsNameSourceType;

            public static CompilationFacts Of(Compilation compilation) => Cache.GetValue(compilation, Compute);

            private static CompilationFacts Compute(Compilation compilation)
            {
                // Copies: a source holds its compilation's facts (for a key read later), never the compilation.
                var facts = new CompilationFacts
                {
                    TypeNames = new HashSet<string>(compilation.Assembly.TypeNames, StringComparer.Ordinal),
                    NamespaceNames = new HashSet<string>(compilation.Assembly.NamespaceNames, StringComparer.Ordinal),
                };
                var key = new StringBuilder();
                key.Append(compilation.GetTypeByMetadataName("TorchSharp.torch") is not null ? "torch " : "- ")
                   .Append(compilation.GetTypeByMetadataName(TrainParser.TrainingHostName) is not null ? "runtime\u0001" : "-\u0001");
                foreach (var reference in compilation.References)
                    key.Append(((StrongBox<int>)ReferenceIds.GetValue(reference, static _ => new StrongBox<int>(Interlocked.Increment(ref _nextReferenceId)))).Value).Append(',');
                key.Append('\u0001');
                foreach (var tree in compilation.SyntaxTrees)
                {
                    if (tree.GetRoot() is not CompilationUnitSyntax unit) continue;
                    foreach (var u in unit.Usings)
                    {
                        if (!u.GlobalKeyword.IsKind(SyntaxKind.GlobalKeyword)) continue;
                        key.Append(u.ToString()).Append('\u0001');
                        facts.GlobalUsingsNameSourceType |= NamesSourceType(u, facts.TypeNames);
                    }
                }
                facts.Key = key.ToString();
                return facts;
            }
        }
    }
}
