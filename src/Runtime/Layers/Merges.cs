// Graph models' merge layers ([Add], [Multiply], [Concat]): parameterless modules, one per merge, so each merge has a
// slot, a name in the summary and (Concat) its dim at run time. The generated forward calls torch.add/mul/cat on the
// sources directly; these modules run the same operation for hand-written code.
namespace ModelDsl.Layers;

/// <summary>[Add(a, b)]: the element-wise sum of two tensors (<c>torch.add</c>, with broadcasting). No parameters.</summary>
public sealed class Add : nn.Module<Tensor, Tensor>
{
    /// <summary>Creates the merge.</summary>
    public Add() : base(nameof(Add)) { }

    /// <summary><c>torch.add(a, b)</c>.</summary>
    public Tensor forward(Tensor a, Tensor b) => torch.add(a, b);

    /// <summary>A merge takes its sources: call <see cref="forward(Tensor, Tensor)"/>.</summary>
    public override Tensor forward(Tensor input) => throw Merge.OneInput(nameof(Add));
}

/// <summary>[Multiply(a, b)]: the element-wise product of two tensors (<c>torch.mul</c>, with broadcasting). No parameters.</summary>
public sealed class Multiply : nn.Module<Tensor, Tensor>
{
    /// <summary>Creates the merge.</summary>
    public Multiply() : base(nameof(Multiply)) { }

    /// <summary><c>torch.mul(a, b)</c>.</summary>
    public Tensor forward(Tensor a, Tensor b) => torch.mul(a, b);

    /// <summary>A merge takes its sources: call <see cref="forward(Tensor, Tensor)"/>.</summary>
    public override Tensor forward(Tensor input) => throw Merge.OneInput(nameof(Multiply));
}

/// <summary>[Concat(a, b, …, Dim = d)]: tensors joined along <see cref="Dim"/> (<c>torch.cat</c>). No parameters.</summary>
public sealed class Concat : nn.Module<Tensor, Tensor>
{
    /// <summary>Creates the merge along <paramref name="dim"/> (negative counts from the end).</summary>
    public Concat(long dim) : base(nameof(Concat)) { Dim = dim; }

    /// <summary>The dimension joined along, as declared (negative counts from the end).</summary>
    public long Dim { get; }

    /// <summary><c>torch.cat(tensors, Dim)</c>.</summary>
    public Tensor forward(IList<Tensor> tensors) => torch.cat(tensors, Dim);

    /// <summary>A merge takes its sources: call <see cref="forward(IList{Tensor})"/>.</summary>
    public override Tensor forward(Tensor input) => throw Merge.OneInput(nameof(Concat));
}

internal static class Merge
{
    public static NotSupportedException OneInput(string kind) =>
        new($"{kind} merges the outputs of the layers its attribute names; call forward with those tensors (the generated forward calls torch.{kind switch { "Add" => "add", "Multiply" => "mul", _ => "cat" }} on them)");
}
