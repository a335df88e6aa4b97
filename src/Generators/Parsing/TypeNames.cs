using System.Runtime.CompilerServices;

namespace ModelDsl.Generators.Parsing
{
    /// <summary>
    /// A type's names as the parser writes and compares them, computed once per type symbol: every layer of every model
    /// asks for its property type's (a few TorchSharp types), and Roslyn's display strings are built anew on each call.
    /// A symbol's names never change, so they are kept for as long as the symbol lives.
    /// </summary>
    internal static class TypeNames
    {
        private static readonly ConditionalWeakTable<ITypeSymbol, Names> Cache = new();

        /// <summary><c>TorchSharp.Modules.Linear</c>: <see cref="ISymbol.ToDisplayString"/> with the default format, without a nullable annotation.</summary>
        public static string Display(ITypeSymbol type) => Of(type).Display;

        /// <summary><c>global::TorchSharp.Modules.Linear</c>.</summary>
        public static string FullyQualified(ITypeSymbol type) => Of(type).FullyQualified;

        /// <summary><c>TorchSharp.Modules.Linear</c>, with the arity of a generic type (<c>Module`2</c>), as metadata names it.</summary>
        public static string FullMetadataName(ITypeSymbol type) => Of(type).FullMetadata;

        // Keyed on the type without its nullable annotation: a property's type is a new wrapper object on every call in a
        // nullable context, and none of these names shows the annotation.
        private static Names Of(ITypeSymbol type) => Cache.GetValue(type.WithNullableAnnotation(NullableAnnotation.None), static t => new Names(
            t.ToDisplayString(),
            t.ToDisplayString(SymbolDisplayFormat.FullyQualifiedFormat),
            t.ContainingNamespace is { IsGlobalNamespace: false } ns ? ns.ToDisplayString() + "." + t.MetadataName : t.MetadataName));

        private sealed class Names
        {
            public readonly string Display;
            public readonly string FullyQualified;
            public readonly string FullMetadata;

            public Names(string display, string fullyQualified, string fullMetadata) =>
                (Display, FullyQualified, FullMetadata) = (display, fullyQualified, fullMetadata);
        }
    }
}
