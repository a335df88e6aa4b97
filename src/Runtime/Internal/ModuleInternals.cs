using System.Reflection;
using TorchSharp.Modules;

namespace ModelDsl.Runtime.Internal;

/// <summary>
/// The few TorchSharp 0.107 module internals that pruning needs and TorchSharp does not expose: removing a
/// registered parameter or buffer, finding the field a module's <c>forward</c> reads a parameter from, and
/// registering a forward pre-hook on a module whose arity is only known at run time.
/// </summary>
/// <remarks>
/// PyTorch modules keep parameters in one dictionary that <c>forward</c> reads through attribute lookup, so
/// <c>torch.nn.utils.prune</c> can swap <c>weight</c> for a plain tensor. TorchSharp modules read fields
/// (<c>Linear._weight</c>) and keep a separate registry (<c>_internal_params</c>) for <c>named_parameters</c>, so
/// both must be edited. Everything is resolved once, up front: if a TorchSharp upgrade renames a member, the type
/// initializer fails with a message naming it instead of pruning silently doing nothing.
/// </remarks>
internal static class ModuleInternals
{
    private const BindingFlags Instance = BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic;

    private static readonly MethodInfo RegisterParameterOrRemove = Find(
        typeof(nn.Module).GetMethod("ConditionallyRegisterParameter", Instance, null, new[] { typeof(string), typeof(Parameter) }, null),
        "nn.Module.ConditionallyRegisterParameter(string, Parameter)");

    private static readonly MethodInfo RegisterBufferOrRemove = Find(
        typeof(nn.Module).GetMethod("ConditionallyRegisterBuffer", Instance, null, new[] { typeof(string), typeof(Tensor), typeof(bool) }, null),
        "nn.Module.ConditionallyRegisterBuffer(string, Tensor, bool)");

    private static readonly MethodInfo RegisterComponentsMethod = Find(
        typeof(nn.Module).GetMethod("RegisterComponents", Instance, null, Type.EmptyTypes, null),
        "nn.Module.RegisterComponents()");

    private static MethodInfo Find(MethodInfo? method, string what) =>
        method ?? throw new MissingMethodException(
            $"TorchSharp {typeof(nn.Module).Assembly.GetName().Version} has no {what}; ModelDsl's pruning was written against TorchSharp 0.107.");

    /// <summary>Removes parameter <paramref name="name"/> from the module's registry (not from its fields).</summary>
    public static void RemoveParameter(nn.Module module, string name) => RegisterParameterOrRemove.Invoke(module, new object?[] { name, null });

    /// <summary>Removes buffer <paramref name="name"/> from the module's registry.</summary>
    public static void RemoveBuffer(nn.Module module, string name) => RegisterBufferOrRemove.Invoke(module, new object?[] { name, null, true });

    /// <summary>Replaces (keeping its position) or adds buffer <paramref name="name"/>.</summary>
    public static void SetBuffer(nn.Module module, string name, Tensor value) => RegisterBufferOrRemove.Invoke(module, new object?[] { name, value, true });

    /// <summary>
    /// Runs TorchSharp's one-time field scan now. It registers every Tensor/Parameter/Module field that is not
    /// registered yet; run later (when the module is added to a parent), it would register the pruned tensor that
    /// now sits in the <c>weight</c> field as a parameter again.
    /// </summary>
    public static void EnsureComponentsRegistered(nn.Module module) => RegisterComponentsMethod.Invoke(module, null);

    /// <summary>The instance fields (any visibility, whole type hierarchy) that currently hold <paramref name="tensor"/>.</summary>
    public static List<FieldInfo> FieldsHolding(nn.Module module, Tensor tensor)
    {
        var result = new List<FieldInfo>();
        var seen = new HashSet<string>();
        IntPtr handle = tensor.Handle;
        for (var type = module.GetType(); type is not null && type != typeof(object); type = type.BaseType)
        {
            foreach (var field in type.GetFields(Instance | BindingFlags.DeclaredOnly))
            {
                if (!typeof(Tensor).IsAssignableFrom(field.FieldType) || !seen.Add(type.FullName + "." + field.Name))
                    continue;
                if (field.GetValue(module) is Tensor value && (ReferenceEquals(value, tensor) || SameHandle(value, handle)))
                    result.Add(field);
            }
        }
        return result;
    }

    private static bool SameHandle(Tensor value, IntPtr handle)
    {
        try { return value.Handle == handle; }
        catch (InvalidOperationException) { return false; } // a disposed tensor left in a field
    }

    /// <summary>
    /// Registers <paramref name="hook"/> to run before every <c>call</c> of the module (TorchSharp's
    /// <c>HookableModule.register_forward_pre_hook(Action&lt;Module&gt;)</c>, found on the runtime type because the
    /// module's arity is not known here). Returns the action that removes it, or <c>null</c> when the module type
    /// takes no hooks.
    /// </summary>
    public static Action? RegisterForwardPreHook(nn.Module module, Action<nn.Module> hook)
    {
        var register = module.GetType().GetMethod("register_forward_pre_hook", BindingFlags.Instance | BindingFlags.Public, null, new[] { typeof(Action<nn.Module>) }, null);
        if (register is null)
            return null;
        object remover = register.Invoke(module, new object[] { hook })!;
        var remove = remover.GetType().GetMethod("remove", BindingFlags.Instance | BindingFlags.Public, null, Type.EmptyTypes, null)
            ?? throw new MissingMethodException($"TorchSharp's {remover.GetType().Name} has no remove().");
        return () => remove.Invoke(remover, null);
    }
}
