using System.Collections.Generic;
using System.Collections.Immutable;
using System.Composition;
using System.Globalization;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeActions;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using ModelDsl.Generators.Diagnostics;

namespace ModelDsl.CodeFixes
{
    /// <summary>
    /// Fixes for the ModelDsl diagnostics whose repair is mechanical, so the IDE offers them on the light bulb:
    /// MD0101 (write the inferred size, or drop the explicit one and let the compiler infer it), MD0301 (clamp the
    /// pruning amount into range), MD0304 (move [Quantize] after the last [Prune]), MD0016 (run a layer that [Quantize]
    /// replaces through its slot, <c>GetLayer(nameof(X)).call(x)</c>) and MD0017 (<c>X.forward(x)</c> → <c>X.call(x)</c>). The generator reports the
    /// diagnostics; the value a fix writes travels in <see cref="Diagnostic.Properties"/> (<see cref="FixValue.Key"/>).
    /// </summary>
    [ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(ModelDslCodeFixProvider)), Shared]
    public sealed class ModelDslCodeFixProvider : CodeFixProvider
    {
        internal const string SizeMismatchId = "MD0101";
        internal const string AmountOutOfRangeId = "MD0301";
        internal const string PruneAfterQuantizeId = "MD0304";
        internal const string ReadThroughPropertyId = "MD0016";
        internal const string CalledThroughForwardId = "MD0017";

        private const string QuantizeAttributeName = "ModelDsl.QuantizeAttribute";
        private const string PruneAttributeName = "ModelDsl.PruneAttribute";

        /// <inheritdoc />
        public override ImmutableArray<string> FixableDiagnosticIds { get; } =
            ImmutableArray.Create(SizeMismatchId, AmountOutOfRangeId, PruneAfterQuantizeId, ReadThroughPropertyId, CalledThroughForwardId);

        /// <inheritdoc />
        public override FixAllProvider GetFixAllProvider() => WellKnownFixAllProviders.BatchFixer;

        /// <inheritdoc />
        public override async Task RegisterCodeFixesAsync(CodeFixContext context)
        {
            var root = await context.Document.GetSyntaxRootAsync(context.CancellationToken).ConfigureAwait(false);
            if (root is null) return;
            foreach (var diagnostic in context.Diagnostics)
            {
                var node = root.FindNode(diagnostic.Location.SourceSpan, getInnermostNodeForTie: true);
                diagnostic.Properties.TryGetValue(FixValue.Key, out var value);
                switch (diagnostic.Id)
                {
                    case SizeMismatchId when node.FirstAncestorOrSelf<AttributeArgumentSyntax>() is { } argument:
                        if (IsNumber(value))
                        {
                            context.RegisterCodeFix(CodeAction.Create($"Use the inferred size {value}",
                                _ => Task.FromResult(ReplaceValue(context.Document, root, argument, value!)),
                                equivalenceKey: SizeMismatchId + ".Inferred"), diagnostic);
                        }
                        context.RegisterCodeFix(CodeAction.Create("Remove the explicit size and let the compiler infer it",
                            _ => Task.FromResult(RemoveArgument(context.Document, root, argument)),
                            equivalenceKey: SizeMismatchId + ".Remove"), diagnostic);
                        break;

                    case AmountOutOfRangeId when IsNumber(value) && node.FirstAncestorOrSelf<AttributeArgumentSyntax>() is { } argument:
                        context.RegisterCodeFix(CodeAction.Create($"Clamp the amount to {value}",
                            _ => Task.FromResult(ReplaceValue(context.Document, root, argument, value!)),
                            equivalenceKey: AmountOutOfRangeId), diagnostic);
                        break;

                    case CalledThroughForwardId when node is IdentifierNameSyntax { Identifier.ValueText: "forward" } forward:
                        context.RegisterCodeFix(CodeAction.Create("Call the layer with .call (runs its hooks)",
                            _ => Task.FromResult(context.Document.WithSyntaxRoot(root.ReplaceNode(forward, Call(forward)))),
                            equivalenceKey: CalledThroughForwardId), diagnostic);
                        break;

                    // Only where the layer is called: the slot is a Module<Tensor, Tensor>, which has no 'weight' to read.
                    case ReadThroughPropertyId when node is ExpressionSyntax layer
                        && layer.Parent is MemberAccessExpressionSyntax { Name.Identifier.ValueText: "call" or "forward" } invoked
                        && invoked.Expression == layer && invoked.Parent is InvocationExpressionSyntax { ArgumentList.Arguments.Count: 1 }:
                        context.RegisterCodeFix(CodeAction.Create("Run the layer through its slot: GetLayer(nameof(...)).call",
                            _ => Task.FromResult(context.Document.WithSyntaxRoot(root.ReplaceNode(invoked, ThroughSlot(invoked)))),
                            equivalenceKey: ReadThroughPropertyId), diagnostic);
                        break;

                    case PruneAfterQuantizeId when node.FirstAncestorOrSelf<TypeDeclarationSyntax>() is { } type:
                        context.RegisterCodeFix(CodeAction.Create("Move [Quantize] after the last [Prune]",
                            ct => MoveQuantizeLastAsync(context.Document, type, ct),
                            equivalenceKey: PruneAfterQuantizeId), diagnostic);
                        break;
                }
            }
        }

        private static IdentifierNameSyntax Call(IdentifierNameSyntax forward) =>
            SyntaxFactory.IdentifierName("call").WithTriviaFrom(forward);

        /// <summary><c>Hidden.call</c> or <c>this.Hidden.forward</c> → <c>GetLayer(nameof(Hidden)).call</c>.</summary>
        private static MemberAccessExpressionSyntax ThroughSlot(MemberAccessExpressionSyntax invoked)
        {
            string name = invoked.Expression is MemberAccessExpressionSyntax { Name: var member } ? member.Identifier.ValueText : invoked.Expression.ToString().Trim();
            var slot = SyntaxFactory.ParseExpression($"GetLayer(nameof({name}))").WithTriviaFrom(invoked.Expression);
            var method = invoked.Name is IdentifierNameSyntax { Identifier.ValueText: "forward" } forward ? Call(forward) : invoked.Name;
            return invoked.WithExpression(slot).WithName(method);
        }

        private static bool IsNumber(string? value) =>
            value is not null && double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out _);

        /// <summary>Writes <paramref name="value"/> (an int, or a double when it has a decimal point) as the argument's value.</summary>
        private static Document ReplaceValue(Document document, SyntaxNode root, AttributeArgumentSyntax argument, string value)
        {
            // Parsed, so the literal is typed as the compiler would type it (512 an int, 1.0 a double).
            var literal = SyntaxFactory.ParseExpression(value);
            var updated = argument.WithExpression(literal.WithTriviaFrom(argument.Expression));
            return document.WithSyntaxRoot(root.ReplaceNode(argument, updated));
        }

        /// <summary>
        /// Drops the explicit input size: every layer attribute has the overload without it, as PyTorch's lazy modules
        /// do (<c>[Linear(64, 10)]</c> → <c>[Linear(10)]</c>, <c>[BatchNorm2d(16)]</c> → <c>[BatchNorm2d]</c>).
        /// </summary>
        private static Document RemoveArgument(Document document, SyntaxNode root, AttributeArgumentSyntax argument)
        {
            if (argument.Parent is not AttributeArgumentListSyntax list) return document;
            SyntaxNode newRoot = list.Arguments.Count == 1 && list.Parent is AttributeSyntax attribute
                ? root.ReplaceNode(attribute, attribute.WithArgumentList(null).WithTriviaFrom(attribute))
                : root.ReplaceNode(list, list.WithArguments(RemoveKeepingSeparators(list.Arguments, argument)));
            return document.WithSyntaxRoot(newRoot);
        }

        private static SeparatedSyntaxList<AttributeArgumentSyntax> RemoveKeepingSeparators(SeparatedSyntaxList<AttributeArgumentSyntax> arguments, AttributeArgumentSyntax removed)
        {
            // "64, 10" without "64" is "10": the separator after the removed argument goes with it, and the argument
            // that moves into its place keeps the removed one's leading trivia.
            int index = arguments.IndexOf(removed);
            var remaining = arguments.Where((_, i) => i != index).ToList();
            if (index < remaining.Count)
                remaining[index] = remaining[index].WithLeadingTrivia(removed.GetLeadingTrivia());
            return SyntaxFactory.SeparatedList(remaining);
        }

        private static async Task<Document> MoveQuantizeLastAsync(Document document, TypeDeclarationSyntax type, CancellationToken ct)
        {
            var model = await document.GetSemanticModelAsync(ct).ConfigureAwait(false);
            if (model is null) return document;
            bool Is(AttributeSyntax a, string name) =>
                model.GetSymbolInfo(a, ct).Symbol?.ContainingType?.ToDisplayString() == name;

            var quantize = type.AttributeLists.SelectMany(l => l.Attributes).Where(a => Is(a, QuantizeAttributeName)).ToList();
            var lastPruneList = type.AttributeLists.LastOrDefault(l => l.Attributes.Any(a => Is(a, PruneAttributeName)));
            if (quantize.Count == 0 || lastPruneList is null) return document;

            var lists = new List<AttributeListSyntax>();
            SyntaxTriviaList carried = default; // the leading trivia (doc comment) of a list that disappears
            foreach (var list in type.AttributeLists)
            {
                var kept = list.Attributes.Where(a => !quantize.Contains(a)).ToList();
                if (kept.Count == 0)
                {
                    if (lists.Count == 0) carried = list.GetLeadingTrivia();
                    continue;
                }
                var updated = kept.Count == list.Attributes.Count ? list : list.WithAttributes(SyntaxFactory.SeparatedList(kept));
                if (lists.Count == 0 && carried.Count > 0) updated = updated.WithLeadingTrivia(carried);
                lists.Add(updated);
                if (list == lastPruneList)
                {
                    var moved = SyntaxFactory.AttributeList(SyntaxFactory.SeparatedList(quantize.Select(a => a.WithoutTrivia())))
                        .WithLeadingTrivia(Indentation(list.GetLeadingTrivia()))
                        .WithTrailingTrivia(list.GetTrailingTrivia());
                    lists.Add(moved);
                }
            }

            var root = await document.GetSyntaxRootAsync(ct).ConfigureAwait(false);
            if (root is null) return document;
            return document.WithSyntaxRoot(root.ReplaceNode(type, type.WithAttributeLists(SyntaxFactory.List(lists))));
        }

        /// <summary>The whitespace that indents a line: what follows the last end of line in a leading trivia.</summary>
        private static SyntaxTriviaList Indentation(SyntaxTriviaList leading)
        {
            var last = leading.LastOrDefault();
            return last.IsKind(SyntaxKind.WhitespaceTrivia) ? SyntaxFactory.TriviaList(last) : default;
        }
    }
}
