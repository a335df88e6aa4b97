using System;
using System.Collections.Generic;
using System.Linq;
using ModelDsl.Runtime.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// When ZeRO stage 3 gathers and frees the other ranks' parameters inside a step, for the fp32 parameters
/// (<see cref="ShardedDataParallelStrategy"/>) and the bf16 working weights (<see cref="ShardedWorkingCopy"/>) alike. The
/// model is cut into units, each with a forward pre-hook that gathers its parameters (those not whole yet):
/// <list type="bullet">
/// <item>each block that recomputes in backward (<see cref="BlockRecompute.RecomputedBlocks"/>: a layer of a
/// <c>TransformerBlock</c>, a copy of a repeated block, a composed block) is a unit of its own, and its weights are
/// freed right after its first forward (that forward saves nothing for backward), gathered again before its
/// recomputation in backward, and freed again once the next block's backward starts (by then autograd has accumulated
/// the block's gradients into its parameters) — so a step holds one block's gathered weights in forward and at most two
/// in backward, as FSDP's FULL_SHARD does per wrapped module;</item>
/// <item>every other top-level layer is a unit (the embedding, the head, a block that does not recompute) and keeps its
/// gathered parameters until the strategy frees them after the gradients are reduced: its forward saves them for
/// backward, and TorchSharp has no saved-tensor hooks to gather them again;</item>
/// <item>a pre-hook on the model gathers what no layer holds.</item>
/// </list>
/// A parameter two units share (a tied weight) is never freed inside the step: only a block's own parameters are.
/// </summary>
internal sealed class ShardedGatherHooks : IDisposable
{
    private readonly Action<int[]> _gather;
    private readonly Action<int[]> _free;
    private readonly List<Action> _removers = new();
    private readonly List<int[]> _pending = new();

    /// <param name="model">The model whose forward runs.</param>
    /// <param name="slots">A tensor's handle to its slot (of <paramref name="count"/>).</param>
    /// <param name="count">Slots.</param>
    /// <param name="gather">Gathers the slots given (those not whole yet).</param>
    /// <param name="free">Frees the slots given (the other ranks' of them; the rank's own stay).</param>
    /// <exception cref="NotSupportedException">Some parameters belong to no hookable layer and the model takes no pre-hook.</exception>
    public ShardedGatherHooks(nn.Module model, IReadOnlyDictionary<IntPtr, int> slots, int count, Action<int[]> gather, Action<int[]> free)
    {
        (_gather, _free) = (gather, free);
        int[] Slots(nn.Module module) =>
            module.parameters().Select(p => slots.TryGetValue(p.Handle, out int i) ? i : -1).Where(i => i >= 0).Distinct().ToArray();

        var units = new List<(nn.Module<Tensor, Tensor> Module, int[] Slots, bool Block)>();
        foreach (var (_, child) in model.named_children())
        {
            if (child is not nn.Module<Tensor, Tensor> layer) continue;
            var blocks = BlockRecompute.RecomputedBlocks(child).Select(b => (Module: b, Slots: Slots(b))).Where(b => b.Slots.Length > 0).ToList();
            foreach (var block in blocks) units.Add((block.Module, block.Slots, true));
            var inBlocks = blocks.SelectMany(b => b.Slots).ToHashSet();
            int[] rest = Slots(child).Where(i => !inBlocks.Contains(i)).ToArray();
            if (rest.Length > 0) units.Add((layer, rest, false));
        }
        var covered = units.SelectMany(u => u.Slots).ToHashSet();
        int[] uncovered = Enumerable.Range(0, count).Where(i => !covered.Contains(i)).ToArray();
        var uses = units.SelectMany(u => u.Slots).GroupBy(i => i).ToDictionary(g => g.Key, g => g.Count());
        foreach (var (module, own, isBlock) in units)
        {
            _removers.Add(module.register_forward_pre_hook((_, input) => { Gather(own); return input; }).remove);
            if (!isBlock) continue;
            int[] exclusive = own.Where(i => uses[i] == 1).ToArray();
            _removers.Add(BlockRecompute.Track(module, new Block(this, own, exclusive)));
        }
        if (uncovered.Length == 0) return;
        if (model is not nn.Module<Tensor, Tensor> root)
            throw new NotSupportedException($"Shard = ShardLevel.Parameters gathers parameters in forward pre-hooks; {model.GetType().Name} takes none.");
        _removers.Add(root.register_forward_pre_hook((_, input) => { Gather(uncovered); return input; }).remove);
    }

    /// <summary>The strategy freed every other rank's parameter (after the reduction): nothing is left to free.</summary>
    public void Freed() => _pending.Clear();

    private void Gather(int[] slots)
    {
        // The blocks whose backward is over: their gradients are in their parameters now (autograd accumulates a
        // node's gradients before it runs the next node), so their weights can go before the next block's come.
        foreach (var done in _pending) _free(done);
        _pending.Clear();
        _gather(slots);
    }

    private sealed class Block : BlockRecompute.IBlockWeights
    {
        private readonly ShardedGatherHooks _hooks;
        private readonly int[] _slots, _exclusive;

        public Block(ShardedGatherHooks hooks, int[] slots, int[] exclusive) => (_hooks, _slots, _exclusive) = (hooks, slots, exclusive);

        public void Gather() => _hooks.Gather(_slots);
        public void AfterForward() => _hooks._free(_exclusive);
        public void AfterBackward() => _hooks._pending.Add(_exclusive);
    }

    /// <summary>Removes the hooks.</summary>
    public void Dispose()
    {
        foreach (var remove in _removers) remove();
        _removers.Clear();
        _pending.Clear();
    }
}
