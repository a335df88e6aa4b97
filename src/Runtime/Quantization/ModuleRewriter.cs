using System.Reflection;
using System.Runtime.InteropServices;
using ModelDsl.Runtime.Pruning;
using TorchSharp.Modules;

namespace ModelDsl.Runtime.Quantization;

/// <summary>
/// Builds the quantised copy of a model: <c>copy.deepcopy</c> followed by <c>swap_module</c> for every module whose
/// type is exactly <see cref="Linear"/>, and every <see cref="RecurrentLayer"/> (an LSTM or GRU), as
/// <c>quantize_dynamic</c> does.
/// </summary>
/// <remarks>
/// TorchSharp has no deep copy and its layer types are sealed, and a generated model keeps each layer in a
/// <c>readonly</c> field of the layer's own type (<c>Linear __Hidden</c>) that its <c>forward</c> reads, so a
/// replacement cannot be put where the original was. The copy is made through the model's public parameterless
/// constructor plus its state; then a child that changes is either
/// <list type="bullet">
/// <item>stored into the field(s) that hold it, when their type accepts the replacement (a custom module that
/// declares its layers as <c>Module&lt;Tensor, Tensor&gt;</c>), or</item>
/// <item>the whole module is rebuilt as a <see cref="QuantizedSequentialModel"/> running the (converted) children in
/// registration order — allowed only for a <see cref="Sequential"/> or for a generated model whose
/// <c>forward</c> is shown to do exactly that: the copy and the chain of its children must give identical
/// outputs on a probe input built from the model's compile-time <c>Summary</c>.</item>
/// </list>
/// Anything else is rejected with the reason, never quantised half-way.
/// </remarks>
internal static class ModuleRewriter
{
    public static nn.Module<Tensor, Tensor> Convert(nn.Module<Tensor, Tensor> model, QuantizeMode mode)
    {
        if (Prune.IsPruned(model))
            throw new InvalidOperationException(
                "The model has pruned parameters (weight_orig/weight_mask); call Prune.Remove on each of them before quantising, " +
                "so that the quantised weights are the final, masked ones (PyTorch's flow: prune, remove, quantize_dynamic).");

        // Building copies runs constructors, which draw initial weights from the global generator; the caller's
        // random stream must not depend on whether it quantised a model.
        using var rngState = random.get_rng_state();
        try
        {
            using var noGrad = no_grad();
            var copy = Copy(model);
            var converted = Rewrite(copy, mode, model.GetType().Name);
            converted.eval();
            return converted;
        }
        finally
        {
            random.set_rng_state(rngState);
        }
    }

    /// <summary>A deep copy (new tensors) of a module tree, in the source's training mode.</summary>
    private static nn.Module<Tensor, Tensor> Copy(nn.Module<Tensor, Tensor> source)
    {
        nn.Module<Tensor, Tensor> copy = source switch
        {
            Sequential sequential => nn.Sequential(sequential.named_children()
                .Select(c => (c.name, Copy(AsTensorModule(c.module, c.name)))).ToArray()),
            Linear l => nn.Linear(l.in_features, l.out_features, l.bias is not null, l.weight.device, l.weight.dtype),
            ReLU r => nn.ReLU(r.inplace),
            GELU g => nn.GELU(g.approximate, g.inplace),
            SiLU s => nn.SiLU(s.inplace),
            Tanh t => nn.Tanh(t.inplace),
            Sigmoid s => nn.Sigmoid(s.inplace),
            LeakyReLU l => nn.LeakyReLU(l.negative_slope, l.inplace),
            Identity => nn.Identity(),
            Dropout d => nn.Dropout(d.p, d.inplace),
            Flatten f => nn.Flatten(f.start_dim, f.end_dim),
            Softmax s => nn.Softmax(s.dim),
            LogSoftmax s => nn.LogSoftmax(s.dim),
            LayerNorm n => nn.LayerNorm(n.normalized_shape, n.eps, n.elementwise_affine, n.bias is not null),
            BatchNorm1d b => nn.BatchNorm1d(b.num_features, b.eps, b.momentum ?? 0.1, b.affine, b.track_running_stats),
            BatchNorm2d b => nn.BatchNorm2d(b.num_features, b.eps, b.momentum ?? 0.1, b.affine, b.track_running_stats),
            RecurrentLayer r => r.CloneEmpty(),
            _ => CopyThroughConstructor(source),
        };
        if (source is not Sequential)
            CopyState(source, copy);
        copy.train(source.training);
        return copy;
    }

    private static nn.Module<Tensor, Tensor> CopyThroughConstructor(nn.Module<Tensor, Tensor> source)
    {
        var type = source.GetType();
        var constructor = type.GetConstructor(Type.EmptyTypes);
        if (constructor is null)
            throw new NotSupportedException(
                $"Quantize.Dynamic cannot copy a '{type.Name}': it copies models through a public parameterless constructor " +
                "(every generated [Model] has one), Sequential, Linear and the stateless TorchSharp layers. Wrap the layer in a [Model] class.");
        return (nn.Module<Tensor, Tensor>)constructor.Invoke(null);
    }

    private static void CopyState(nn.Module source, nn.Module copy)
    {
        var from = source.state_dict();
        var to = copy.state_dict();
        if (!from.Keys.OrderBy(k => k).SequenceEqual(to.Keys.OrderBy(k => k)))
            throw new NotSupportedException(
                $"A new '{source.GetType().Name}' does not have the same parameters and buffers as the model being quantised " +
                $"([{string.Join(", ", from.Keys)}] vs [{string.Join(", ", to.Keys)}]), so it cannot serve as its copy.");
        foreach (var (key, value) in from)
        {
            if (!to[key].shape.SequenceEqual(value.shape))
                throw new NotSupportedException($"'{key}' of a new '{source.GetType().Name}' has shape [{string.Join(", ", to[key].shape)}], the model's has [{string.Join(", ", value.shape)}].");
            to[key].copy_(value);
        }
    }

    /// <summary>Converts the Linear layers of an owned copy; returns it, a replacement, or a rebuilt chain.</summary>
    private static nn.Module<Tensor, Tensor> Rewrite(nn.Module<Tensor, Tensor> module, QuantizeMode mode, string displayName)
    {
        if (module.GetType() == typeof(Linear))
        {
            var quantized = new DynamicQuantizedLinear((Linear)module, mode);
            module.Dispose();
            return quantized;
        }
        if (module is RecurrentLayer recurrent)
        {
            var quantized = recurrent.Quantized(mode);
            module.Dispose();
            return quantized;
        }

        var children = module.named_children().ToList();
        if (!children.Any(c => ContainsLinear(c.module)))
            return module;

        // Decided on the intact copy: converting a child disposes the Linear that the module's forward still reads.
        string reason = "";
        List<string>? chain = module is Sequential ? children.Select(c => c.name).ToList() : ChainOrder(module, out reason);

        // A child may be registered under several names (TorchSharp registers a sub-model's layer fields again,
        // under the field names, when the sub-model is added to a parent): each object is converted once.
        var results = new Dictionary<nn.Module, nn.Module>(ReferenceEqualityComparer.Instance);
        var converted = new List<(string Name, nn.Module Original, nn.Module Result)>();
        foreach (var (name, child) in children)
        {
            if (!results.TryGetValue(child, out var result))
            {
                result = child is nn.Module<Tensor, Tensor> tensorModule && ContainsLinear(child)
                    ? Rewrite(tensorModule, mode, displayName + "." + name)
                    : child;
                results[child] = result;
            }
            converted.Add((name, child, result));
        }
        var byName = converted.ToDictionary(c => c.Name, c => c.Result);

        if (module is Sequential)
            return nn.Sequential(converted.Select(c => (c.Name, AsTensorModule(c.Result, c.Name))).ToArray());

        if (TryReplaceFields(module, converted))
            return module;

        if (chain is not null)
            return new QuantizedSequentialModel(module.GetType().Name, chain.Select(n => (n, AsTensorModule(byName[n], n))));

        throw new NotSupportedException(
            $"Quantize.Dynamic cannot put quantised layers into '{displayName}' ({module.GetType().Name}): {reason} " +
            "Declare the layers it holds as Module<Tensor, Tensor> fields, or let the generator write its forward.");
    }

    private static bool ContainsLinear(nn.Module module) =>
        IsConverted(module) || module.modules().Any(IsConverted);

    private static bool IsConverted(nn.Module module) => module.GetType() == typeof(Linear) || module is RecurrentLayer { IsQuantized: false };

    private static nn.Module<Tensor, Tensor> AsTensorModule(nn.Module module, string name) =>
        module as nn.Module<Tensor, Tensor>
        ?? throw new NotSupportedException($"'{name}' ({module.GetType().Name}) does not map one tensor to one tensor, so it cannot be run in a chain.");

    /// <summary>
    /// Stores each replacement into the fields that hold the original child, when their types accept it, and
    /// re-registers the children in their original order.
    /// </summary>
    private static bool TryReplaceFields(nn.Module module, List<(string Name, nn.Module Original, nn.Module Result)> converted)
    {
        var plan = new List<(FieldInfo Field, nn.Module Result)>();
        foreach (var (_, original, result) in converted.Where(c => !ReferenceEquals(c.Original, c.Result)))
        {
            var fields = FieldsHolding(module, original);
            // A generated model's layer slots ('__Name') accept any module, but a hand-written forward reads the
            // typed properties in front of them, which would then throw: only the generated forward runs the slots.
            if (module is ILayerHost { ForwardIsGenerated: false } && fields.Any(f => f.Name.StartsWith("__", StringComparison.Ordinal)))
                return false;
            if (fields.Count == 0 || fields.Any(f => !f.FieldType.IsInstanceOfType(result)))
                return false;
            plan.AddRange(fields.Select(f => (f, result)));
        }

        foreach (var (field, result) in plan)
            field.SetValue(module, result);
        foreach (var (name, _, _) in converted)
            module.register_module(name, null!); // null unregisters
        foreach (var (name, _, result) in converted)
            module.register_module(name, result);
        return true;
    }

    private static List<FieldInfo> FieldsHolding(nn.Module owner, nn.Module value)
    {
        var result = new List<FieldInfo>();
        for (var type = owner.GetType(); type is not null && type != typeof(nn.Module); type = type.BaseType)
        {
            foreach (var field in type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            {
                if (!field.FieldType.IsValueType && ReferenceEquals(field.GetValue(owner), value))
                    result.Add(field);
            }
        }
        return result;
    }

    /// <summary>
    /// The layer names to run in order if <paramref name="module"/>'s forward is "run the layers in order": it must be
    /// a generated model (it exposes the static <c>ModelSummary Summary</c>) whose summary layers are its children
    /// (other registered names may only be aliases of them), and whose forward gives exactly what the chain of those
    /// layers gives on a probe input of the declared shape, in eval mode. <c>null</c> otherwise, with the reason.
    /// </summary>
    private static List<string>? ChainOrder(nn.Module<Tensor, Tensor> module, out string reason)
    {
        var summaryProperty = module.GetType().GetProperty("Summary", BindingFlags.Public | BindingFlags.Static);
        if (summaryProperty?.GetValue(null) is not ModelSummary summary)
        {
            reason = "its Linear layers sit in fields that cannot hold a quantised layer, and it is neither a Sequential nor a generated [Model] whose forward could be rebuilt.";
            return null;
        }

        var children = module.named_children().ToList();
        var byName = children.GroupBy(c => c.name).ToDictionary(g => g.Key, g => g.First().module);
        var layers = summary.Layers.Select(l => l.Name).ToList();
        var layerModules = new HashSet<nn.Module>(ReferenceEqualityComparer.Instance);
        foreach (var name in layers)
        {
            if (!byName.TryGetValue(name, out var layer) || layer is not nn.Module<Tensor, Tensor>)
            {
                reason = $"its compile-time summary lists a layer '{name}' that is not one of its tensor-to-tensor sub-modules.";
                return null;
            }
            layerModules.Add(layer);
        }
        if (children.Any(c => !layerModules.Contains(c.module)))
        {
            reason = $"it registers sub-modules that are not layers of its compile-time summary ({string.Join(", ", children.Where(c => !layerModules.Contains(c.module)).Select(c => c.name))}).";
            return null;
        }

        bool wasTraining = module.training;
        try
        {
            module.eval();
            using var scope = NewDisposeScope();
            var probe = Probe(summary);
            var direct = module.forward(probe);
            var chained = probe;
            foreach (var name in layers)
                chained = ((nn.Module<Tensor, Tensor>)byName[name]).forward(chained);
            if (direct.shape.SequenceEqual(chained.shape) && direct.dtype == chained.dtype && direct.equal(chained).all().item<bool>())
            {
                reason = "";
                return layers;
            }
            reason = "it has a hand-written forward (it does not just run its layers in order).";
            return null;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or ExternalException)
        {
            reason = $"it has a hand-written forward (running its layers in order fails: {e.Message.Split('\n')[0]}).";
            return null;
        }
        finally
        {
            module.train(wasTraining);
        }
    }

    private static Tensor Probe(ModelSummary summary)
    {
        // "(B, 1, 8, 8)": symbolic dims become 2 (a batch of two also exercises the batch dimension).
        var dims = summary.Input.Trim('(', ')').Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(d => long.TryParse(d, out long n) ? n : 2L).ToArray();
        using var generator = new Generator(1234);
        return summary.InputType == "Int64"
            ? zeros(dims, dtype: ScalarType.Int64)
            : randn(dims, generator: generator);
    }
}
