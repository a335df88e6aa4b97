using System.Reflection;
using ModelDsl.Runtime.Internal;
using TorchSharp.Modules;

namespace ModelDsl.Runtime.Pruning;

/// <summary>
/// The pruning state of one parameter of one module — what PyTorch keeps in the module (<c>name_orig</c>,
/// <c>name_mask</c>) plus the forward pre-hook object (the method or its <c>PruningContainer</c>).
/// </summary>
internal sealed class PrunedTensor
{
    private readonly FieldInfo[] _fields;
    private readonly bool _wrapAsParameter;
    private readonly List<string> _methods = new();
    private Action? _removeHook;
    private Tensor? _current;

    public PrunedTensor(nn.Module module, string name, Parameter orig, Tensor mask, FieldInfo[] fields)
    {
        Module = module;
        Name = name;
        Orig = orig;
        Mask = mask;
        _fields = fields;
        // A field typed Parameter (Linear._weight, Conv2d._weight) can only hold a Parameter; the Parameter made
        // from mask * orig keeps its autograd history (TorchSharp moves the handle, it does not detach it), so
        // gradients still reach orig.
        _wrapAsParameter = Array.Exists(fields, f => f.FieldType == typeof(Parameter));
    }

    public nn.Module Module { get; }
    public string Name { get; }
    public Parameter Orig { get; }
    public Tensor Mask { get; private set; }

    /// <summary>The tensor the module computes with: <c>mask * orig</c> as of the last recompute.</summary>
    public Tensor Current => _current ?? throw new InvalidOperationException("The pruned tensor has not been computed yet.");

    /// <summary>The methods applied so far, in order (the PruningContainer's history).</summary>
    public IReadOnlyList<string> Methods => _methods;

    public void AddMethod(string name) => _methods.Add(name);

    public void InstallHook()
    {
        // PyTorch: module.register_forward_pre_hook(method). TorchSharp runs pre-hooks from call(), not forward().
        _removeHook = ModuleInternals.RegisterForwardPreHook(Module, _ => Recompute());
    }

    /// <summary>Replaces the mask buffer (same name and position), as <c>register_buffer(name + "_mask", mask)</c> does.</summary>
    public void ReplaceMask(Tensor mask)
    {
        var old = Mask;
        Mask = mask.DetachFromDisposeScope();
        ModuleInternals.SetBuffer(Module, Name + "_mask", Mask);
        old.Dispose();
    }

    /// <summary>
    /// <c>setattr(module, name, mask * orig)</c>: what the forward pre-hook does before every forward. The previous
    /// tensor is released (an autograd graph that still uses it keeps its own reference).
    /// </summary>
    public void Recompute()
    {
        var product = Mask.mul(Orig);
        Tensor value = _wrapAsParameter ? new Parameter(product, product.requires_grad) : product;
        // The hook runs inside whatever dispose scope the caller has open; the module must outlive it.
        value.DetachFromDisposeScope();
        foreach (var field in _fields)
            field.SetValue(Module, value);
        var previous = _current;
        _current = value;
        if (previous is not null && !ReferenceEquals(previous, value))
            previous.Dispose();
    }

    /// <summary>
    /// <c>BasePruningMethod.remove</c>: <c>orig</c> takes the values <c>mask * orig</c> and becomes parameter
    /// <c>name</c> again (the same Parameter object, so optimisers that hold it keep working); <c>name_orig</c>,
    /// <c>name_mask</c> and the hook go.
    /// </summary>
    public void Remove()
    {
        _removeHook?.Invoke();
        _removeHook = null;
        using (no_grad())
        using (var masked = Mask.mul(Orig))
            Orig.copy_(masked);

        ModuleInternals.RemoveParameter(Module, Name + "_orig");
        ModuleInternals.RemoveBuffer(Module, Name + "_mask");
        foreach (var field in _fields)
            field.SetValue(Module, Orig);
        Module.register_parameter(Name, Orig);
        Mask.Dispose();
        _current?.Dispose();
        _current = null;
    }
}
