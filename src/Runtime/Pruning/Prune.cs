using System.Runtime.CompilerServices;
using ModelDsl.Runtime.Internal;
using TorchSharp.Modules;

namespace ModelDsl.Runtime.Pruning;

/// <summary>
/// Pruning of any TorchSharp module's parameters, with the semantics of <c>torch.nn.utils.prune</c>.
/// </summary>
/// <remarks>
/// <para>
/// As in PyTorch, pruning parameter <c>name</c> moves it to the parameter <c>name_orig</c>, adds the buffer
/// <c>name_mask</c> (both visible in <c>named_parameters()</c>, <c>named_buffers()</c> and <c>state_dict()</c>), and
/// makes the module compute with <c>mask * orig</c>: the product is stored where the module's <c>forward</c> reads
/// the parameter (for <c>Linear</c>/<c>Conv2d</c> the <c>_weight</c> field) and recomputed by a forward pre-hook.
/// Gradients reach <c>name_orig</c> only through unpruned entries.
/// </para>
/// <para>
/// TorchSharp runs hooks from <c>module.call(x)</c> (Python's <c>module(x)</c>), not from <c>module.forward(x)</c>.
/// The product is also computed when pruning, so <c>forward</c> computes with the mask too; but after
/// <c>name_orig</c> or the mask change (an optimiser step, <c>load_state_dict</c>), only <c>call</c> recomputes it.
/// A training loop over a pruned module must therefore reach it through <c>call</c>; <c>Sequential</c> does.
/// </para>
/// <para>
/// Pruning a pruned parameter again composes like PyTorch's <c>PruningContainer</c>: the new method prunes only among
/// the survivors (a fraction is a fraction of what is left). Fractions round half to even, as Python's
/// <c>round</c>. Among equal scores at the cut-off, the lower index is pruned first (PyTorch leaves this
/// unspecified); NaN scores count as the largest.
/// </para>
/// <para>
/// Move a module to its device and dtype before pruning it: TorchSharp's <c>Linear.to(...)</c> only converts the
/// tensor in its weight field.
/// </para>
/// </remarks>
public static partial class Prune
{
    private static readonly ConditionalWeakTable<nn.Module, Dictionary<string, PrunedTensor>> State = new();

    /// <summary><c>prune.l1_unstructured</c>: prunes the entries of smallest absolute value.</summary>
    /// <param name="module">The module that owns the parameter.</param>
    /// <param name="name">The parameter's name in the module, e.g. <c>"weight"</c>.</param>
    /// <param name="amount">A fraction (a <c>double</c> in [0, 1]) of, or a count (an <c>int</c>) out of, the entries still alive.</param>
    /// <returns>The module.</returns>
    public static T L1Unstructured<T>(T module, string name, PruneAmount amount) where T : nn.Module =>
        Apply(module, name, new L1UnstructuredMethod(amount));

    /// <summary><c>prune.random_unstructured</c>: prunes entries chosen at random (torch's global generator).</summary>
    /// <param name="module">The module that owns the parameter.</param>
    /// <param name="name">The parameter's name in the module.</param>
    /// <param name="amount">A fraction (a <c>double</c> in [0, 1]) of, or a count (an <c>int</c>) out of, the entries still alive.</param>
    /// <returns>The module.</returns>
    public static T RandomUnstructured<T>(T module, string name, PruneAmount amount) where T : nn.Module =>
        Apply(module, name, new RandomUnstructuredMethod(amount));

    /// <summary>
    /// <c>prune.ln_structured</c>: prunes whole channels along <paramref name="dim"/> (e.g. output neurons of a
    /// Linear weight with <c>dim = 0</c>), those with the smallest Ln norm over all other dimensions.
    /// </summary>
    /// <param name="module">The module that owns the parameter.</param>
    /// <param name="name">The parameter's name in the module; it must have at least two dimensions.</param>
    /// <param name="amount">A fraction (a <c>double</c> in [0, 1]) of, or a count (an <c>int</c>) out of, the channels still alive.</param>
    /// <param name="n">The norm order: 1, 2, <see cref="double.PositiveInfinity"/>, … (<c>torch.norm</c>'s <c>p</c>).</param>
    /// <param name="dim">The channel dimension; negative counts from the end.</param>
    /// <returns>The module.</returns>
    public static T LnStructured<T>(T module, string name, PruneAmount amount, double n, long dim) where T : nn.Module =>
        Apply(module, name, new LnStructuredMethod(amount, n, dim));

    /// <summary><c>prune.random_structured</c>: prunes whole channels along <paramref name="dim"/> chosen at random.</summary>
    /// <param name="module">The module that owns the parameter.</param>
    /// <param name="name">The parameter's name in the module.</param>
    /// <param name="amount">A fraction (a <c>double</c> in [0, 1]) of, or a count (an <c>int</c>) out of, the channels still alive.</param>
    /// <param name="dim">The channel dimension.</param>
    /// <returns>The module.</returns>
    public static T RandomStructured<T>(T module, string name, PruneAmount amount, long dim) where T : nn.Module =>
        Apply(module, name, new RandomStructuredMethod(amount, dim));

    /// <summary><c>prune.custom_from_mask</c>: prunes the entries where <paramref name="mask"/> is 0.</summary>
    /// <param name="module">The module that owns the parameter.</param>
    /// <param name="name">The parameter's name in the module.</param>
    /// <param name="mask">A tensor of the parameter's shape (1 keeps, 0 prunes); it is copied.</param>
    /// <returns>The module.</returns>
    public static T CustomFromMask<T>(T module, string name, Tensor mask) where T : nn.Module
    {
        ArgumentNullException.ThrowIfNull(mask);
        using var detached = mask.detach();
        using var copy = detached.clone();
        return Apply(module, name, new CustomFromMaskMethod(copy));
    }

    /// <summary>
    /// <c>prune.global_unstructured</c>: ranks the entries of all the given parameters together and prunes the
    /// lowest across them (so layers lose different fractions), then applies each parameter's share of the mask.
    /// </summary>
    /// <param name="parameters">(module, parameter name) pairs, in order.</param>
    /// <param name="method"><see cref="PruneMethod.L1Unstructured"/> (or its alias
    /// <see cref="PruneMethod.GlobalL1Unstructured"/>) or <see cref="PruneMethod.RandomUnstructured"/>.</param>
    /// <param name="amount">A fraction (a <c>double</c> in [0, 1]) of, or a count (an <c>int</c>) out of, all the entries still alive.</param>
    public static void GlobalUnstructured(IEnumerable<(nn.Module Module, string Name)> parameters, PruneMethod method, PruneAmount amount) =>
        ApplyGlobal(parameters, method, amount);

    /// <summary>
    /// <c>prune.remove</c>: makes the pruning permanent. The parameter <c>name</c> comes back holding
    /// <c>mask * orig</c> (zeros where pruned; the same Parameter object that became <c>name_orig</c>), and
    /// <c>name_orig</c>, <c>name_mask</c> and the hook are removed.
    /// </summary>
    /// <param name="module">The module that owns the parameter.</param>
    /// <param name="name">The parameter's name.</param>
    /// <returns>The module.</returns>
    /// <exception cref="ArgumentException">The parameter is not pruned.</exception>
    public static T Remove<T>(T module, string name) where T : nn.Module
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(name);
        if (!State.TryGetValue(module, out var pruned) || !pruned.TryGetValue(name, out var state))
            throw new ArgumentException($"Parameter '{name}' of module {Describe(module)} has to be pruned before pruning can be removed");
        state.Remove();
        pruned.Remove(name);
        return module;
    }

    /// <summary><c>prune.is_pruned</c>: whether the module or any of its sub-modules has a pruned parameter.</summary>
    /// <param name="module">The module to inspect.</param>
    public static bool IsPruned(nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        return IsPrunedItself(module) || module.modules().Any(IsPrunedItself);
    }

    private static bool IsPrunedItself(nn.Module module) => State.TryGetValue(module, out var pruned) && pruned.Count > 0;

    /// <summary>The names of the module's own pruned parameters (not its sub-modules'), in pruning order.</summary>
    /// <param name="module">The module to inspect.</param>
    public static IReadOnlyList<string> PrunedParameters(nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        return State.TryGetValue(module, out var pruned) ? pruned.Keys.ToArray() : Array.Empty<string>();
    }

    private static T Apply<T>(T module, string name, PruningMethod method) where T : nn.Module
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(name);
        var pruned = State.GetOrCreateValue(module);

        if (pruned.TryGetValue(name, out var state))
        {
            // A second method joins the first in a PruningContainer: scores are the current, already masked
            // module.<name>, and the new method only sees what is still alive.
            Tensor mask;
            using (no_grad())
            using (var scores = state.Current.detach())
                mask = method.ComputeMaskAmongSurvivors(scores, state.Mask);
            state.ReplaceMask(mask);
            state.AddMethod(method.Name);
            state.Recompute();
            return module;
        }

        var orig = FindParameter(module, name);
        var fields = ModuleInternals.FieldsHolding(module, orig);
        if (fields.Count == 0)
            throw new NotSupportedException(
                $"{Describe(module)} registers parameter '{name}' but holds it in no field, so its forward cannot be made " +
                "to compute with the pruned tensor. Prune works on modules that keep their parameters in fields " +
                "(all TorchSharp layers, generated models, and custom modules that assign Parameter fields).");

        // The mask is computed before the module is touched: if it fails (a bad amount or dim), the module is
        // left exactly as it was, which is what PyTorch's restore-on-error achieves.
        Tensor firstMask;
        using (no_grad())
        using (var scores = orig.detach())
        using (var ones = ones_like(orig))
        using (var computed = method.ComputeMask(scores, ones))
            firstMask = computed.to(orig.dtype);

        ModuleInternals.EnsureComponentsRegistered(module);
        // PyTorch order: name_orig is appended to the parameters, name is removed; name_mask is appended to the buffers.
        module.register_parameter(name + "_orig", orig);
        ModuleInternals.RemoveParameter(module, name);
        var maskBuffer = firstMask.DetachFromDisposeScope();
        module.register_buffer(name + "_mask", maskBuffer);

        state = new PrunedTensor(module, name, orig, maskBuffer, fields.ToArray());
        state.AddMethod(method.Name);
        state.Recompute();
        state.InstallHook();
        pruned[name] = state;
        return module;
    }

    private static Parameter FindParameter(nn.Module module, string name)
    {
        foreach (var (paramName, parameter) in module.named_parameters(recurse: false))
        {
            if (paramName == name)
                return parameter;
        }
        if (module.named_buffers(recurse: false).Any(b => b.name == name))
            throw new ArgumentException($"'{name}' of {Describe(module)} is a buffer, not a parameter; only parameters can be pruned.");
        string known = string.Join(", ", module.named_parameters(recurse: false).Select(p => "'" + p.name + "'"));
        throw new ArgumentException(
            $"'{module.GetType().Name}' object has no parameter '{name}'" + (known.Length > 0 ? $" (its parameters: {known})" : " (it has no parameters of its own)"));
    }

    private static void ApplyGlobal(IEnumerable<(nn.Module Module, string Name)> parameters, PruneMethod method, PruneAmount amount)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        var list = parameters.ToList();
        PruningMethod pruning = method switch
        {
            PruneMethod.L1Unstructured or PruneMethod.GlobalL1Unstructured => new L1UnstructuredMethod(amount),
            PruneMethod.RandomUnstructured => new RandomUnstructuredMethod(amount),
            _ => throw new ArgumentException(
                $"Only \"unstructured\" PRUNING_TYPE supported for the `pruning_method`. Found method {method} of type structured"),
        };
        if (list.Count == 0)
            throw new ArgumentException("GlobalUnstructured needs at least one (module, name) pair to prune.", nameof(parameters));

        // parameters_to_vector of the current tensors (masked where already pruned) and of their masks (ones where not).
        var scores = new List<Tensor>();
        var masks = new List<Tensor>();
        try
        {
            using (no_grad())
            {
                foreach (var (module, name) in list)
                {
                    ArgumentNullException.ThrowIfNull(module);
                    if (State.TryGetValue(module, out var pruned) && pruned.TryGetValue(name, out var state))
                    {
                        using var current = state.Current.detach();
                        using var mask = state.Mask.reshape(-1);
                        scores.Add(current.reshape(-1));
                        masks.Add(mask.to(state.Current.dtype));
                    }
                    else
                    {
                        var parameter = FindParameter(module, name);
                        using var detached = parameter.detach();
                        scores.Add(detached.reshape(-1));
                        masks.Add(ones(parameter.numel(), dtype: parameter.dtype));
                    }
                }

                using var allScores = cat(scores, 0);
                using var allMasks = cat(masks, 0);
                using var finalMask = pruning.ComputeMaskAmongSurvivors(allScores, allMasks);

                long offset = 0;
                for (int i = 0; i < list.Count; i++)
                {
                    var (module, name) = list[i];
                    long count = scores[i].numel();
                    using var flatSlice = finalMask.slice(0, offset, offset + count, 1);
                    using var slice = flatSlice.reshape(CurrentShape(module, name));
                    Apply(module, name, new CustomFromMaskMethod(slice));
                    offset += count;
                }
            }
        }
        finally
        {
            foreach (var t in scores) t.Dispose();
            foreach (var t in masks) t.Dispose();
        }
    }

    private static long[] CurrentShape(nn.Module module, string name) =>
        State.TryGetValue(module, out var pruned) && pruned.TryGetValue(name, out var state)
            ? state.Current.shape
            : FindParameter(module, name).shape;

    /// <summary>A short PyTorch-like description of a module for messages, e.g. <c>Linear(in_features=5, out_features=3, bias=True)</c>.</summary>
    internal static string Describe(nn.Module module) => module switch
    {
        Linear l => $"Linear(in_features={l.in_features}, out_features={l.out_features}, bias={(l.bias is null ? "False" : "True")})",
        Conv2d c => $"Conv2d({c.in_channels}, {c.out_channels}, kernel_size=({string.Join(", ", c.kernel_size)}), stride=({string.Join(", ", c.stride)}))",
        _ => module.GetType().Name,
    };
}
