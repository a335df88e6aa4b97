// Linked into the generator (OptimizationParser checks a [Prune(PruneMethod.Structured)] cut and counts the parameters
// it leaves) and the runtime (OptimizationPipeline cuts the group's modules, OptimizedLayers finds the ones a file may
// show smaller), so the layers the compiler allowed are the layers the runtime cuts.
namespace ModelDsl.Shapes
{
    /// <summary>One layer of a model's graph, as the dependency-group search sees it.</summary>
    /// <param name="Name">The layer's name (a source names it).</param>
    /// <param name="Kind">The layer kind; null for a module that is none of the DSL's kinds (it stops the cut).</param>
    /// <param name="Sources">The layers it reads (<c>"input"</c>: the model input).</param>
    /// <param name="Out">A Linear's out-features or a Conv2d's out-channels, now; -1 for other kinds.</param>
    /// <param name="In">A Linear's in-features or a Conv2d's in-channels, now; -1 for other kinds.</param>
    /// <param name="Groups">A convolution's groups (a grouped convolution can neither be cut nor consume a cut).</param>
    /// <param name="FlattensChannels">A Flatten over (C, H, W): <c>Flatten(1, -1)</c>.</param>
    /// <param name="ConcatDim">A Concat's dim, as written (negative counts from the end).</param>
    /// <param name="Rank">The rank of the layer's output (0 when unknown).</param>
    internal sealed record CutNode(string Name, LayerKind? Kind, IReadOnlyList<string> Sources, long Out = -1, long In = -1,
        long Groups = 1, bool FlattensChannels = false, long ConcatDim = 1, int Rank = 0);

    /// <summary>
    /// A layer whose channels (outputs of a norm, inputs of a consumer) the group cuts: the group's channel i is the
    /// layer's channel <see cref="Offset"/> + i, which a consumer reads as the <see cref="Spatial"/> inputs from
    /// (<see cref="Offset"/> + i)·<see cref="Spatial"/> on (a Flatten makes each channel a run of H·W features).
    /// </summary>
    internal readonly record struct GroupMember(string Layer, long Offset, long Spatial = 1);

    /// <summary>Why a group cannot be cut.</summary>
    internal enum GroupBlock
    {
        /// <summary>It can be cut.</summary>
        None,
        /// <summary>It reaches the model input, whose channels are fixed.</summary>
        Input,
        /// <summary>It reaches the model output, whose shape is fixed.</summary>
        Output,
        /// <summary>A merge would join the group's channels with channels outside it.</summary>
        Merge,
        /// <summary>It reaches a composed [Model] layer or a repeated [Block].</summary>
        ComposedBlock,
        /// <summary>It reaches a layer the cut cannot rewrite.</summary>
        Layer,
    }

    /// <summary>
    /// A dependency group (Torch-Pruning's DepGraph, Fang et al., CVPR 2023): the channels that must be cut with the
    /// same indices — every producer whose outputs meet at an Add or Multiply, the BatchNorms over them, and every
    /// layer that reads them (a Concat offsets the indices of its later sources).
    /// </summary>
    internal sealed class ChannelGroup
    {
        /// <summary>The group's channel count: each producer's outputs.</summary>
        public long Channels { get; set; }
        /// <summary>The Linear and Conv2d layers whose outputs are cut, in the order found (the target first).</summary>
        public List<string> Producers { get; } = new();
        /// <summary>The BatchNorm2d layers that shrink with them.</summary>
        public List<GroupMember> Norms { get; } = new();
        /// <summary>The Linear and Conv2d layers whose inputs are cut.</summary>
        public List<GroupMember> Consumers { get; } = new();
        /// <summary>The merges that join the group (Add, Multiply, Concat).</summary>
        public List<string> Merges { get; } = new();
        /// <summary>Why the group cannot be cut (<see cref="GroupBlock.None"/> when it can).</summary>
        public GroupBlock Blocked { get; set; }
        /// <summary>The layer where the group stopped, when blocked.</summary>
        public string? Blocker { get; set; }
        /// <summary>Why, in words, when blocked.</summary>
        public string? Reason { get; set; }

        /// <summary>Whether the cut reaches layers other than its target, its BatchNorm and its one consumer.</summary>
        public bool IsCoupled => Producers.Count > 1 || Merges.Count > 0 || Consumers.Count > 1;

        /// <summary>Every layer the cut changes: producers, norms, consumers.</summary>
        public IEnumerable<string> Layers => Producers.Concat(Norms.Select(n => n.Layer)).Concat(Consumers.Select(c => c.Layer)).Distinct();

        /// <summary>The group in words, for diagnostics: "'A', 'B' (joined by 'Sum')"; each name after <paramref name="prefix"/> (a block's path).</summary>
        public string Describe(string prefix = "") =>
            string.Join(", ", Producers.Select(p => $"'{prefix}{p}'")) + (Merges.Count == 0 ? "" : $" (joined by {string.Join(", ", Merges.Select(m => $"'{prefix}{m}'"))})");
    }

    /// <summary>The one dependency-group search, from a structured cut's target through the model's graph.</summary>
    internal static class StructuredCut
    {
        /// <summary>
        /// The group of <paramref name="target"/>'s output channels in <paramref name="layers"/> (declaration order).
        /// From each tensor that carries the group's channels, the search goes to its readers — channels pass through
        /// the kinds whose descriptor says so (<see cref="LayerKind.ChannelsPassThrough"/>: activations, pooling,
        /// dropout), a BatchNorm2d over a convolution's channels shrinks with them, a <c>Flatten(1, -1)</c> makes each
        /// channel a run of a Linear's inputs, the next Linear (after a Linear, or a flattened convolution) or
        /// ungrouped Conv2d consumes them, an Add or Multiply joins its other sources' channels to the group, a Concat
        /// along the channels shifts them by its earlier sources' channels — and back up to what made them: a merge's
        /// other sources lead, through the same pass-through kinds, to the Linear or Conv2d layers that must lose the
        /// same outputs. Anything else blocks the group, and so do the model input and output.
        /// </summary>
        /// <param name="layers">The model's layers.</param>
        /// <param name="target">The Linear or Conv2d whose outputs the cut removes.</param>
        /// <param name="inputSample">The model input's per-sample sizes (the channels a Concat of the input adds).</param>
        /// <param name="outputLayer">The layer the model returns.</param>
        public static ChannelGroup Group(IReadOnlyList<CutNode> layers, string target, IReadOnlyList<long> inputSample, string? outputLayer) =>
            new Search(layers, inputSample, outputLayer).Run(target);

        private sealed class Search
        {
            private readonly Dictionary<string, CutNode> _byName = new(StringComparer.Ordinal);
            private readonly Dictionary<string, List<(CutNode Reader, int Index)>> _readers = new(StringComparer.Ordinal);
            private readonly IReadOnlyList<long> _input;
            private readonly string? _output;
            // Each tensor the group reaches, with the offset its channels sit at there.
            private readonly Dictionary<string, long> _visited = new(StringComparer.Ordinal);
            private readonly Queue<(string Name, long Offset, long Flattened)> _queue = new();
            private readonly ChannelGroup _group = new();
            private bool _conv;

            public Search(IReadOnlyList<CutNode> layers, IReadOnlyList<long> input, string? output)
            {
                foreach (var layer in layers)
                {
                    _byName[layer.Name] = layer;
                    for (int i = 0; i < layer.Sources.Count; i++)
                    {
                        if (!_readers.TryGetValue(layer.Sources[i], out var list)) _readers[layer.Sources[i]] = list = new();
                        list.Add((layer, i));
                    }
                }
                _input = input;
                _output = output ?? (layers.Count == 0 ? null : layers[layers.Count - 1].Name);
            }

            public ChannelGroup Run(string target)
            {
                if (!_byName.TryGetValue(target, out var node))
                {
                    Block(GroupBlock.Layer, target, $"'{target}' is not a layer of the model");
                    return _group;
                }
                _conv = node.Kind == LayerKind.Conv2d;
                _group.Channels = node.Out;
                Visit(target, 0, 0);
                // The search goes on past a block (the first reason stands), so a diagnostic names the whole group.
                while (_queue.Count > 0)
                {
                    var (name, offset, flattened) = _queue.Dequeue();
                    Up(name, offset);
                    if (_byName.ContainsKey(name)) Down(name, offset, flattened);
                }
                return _group;
            }

            /// <summary>Adds "<paramref name="name"/>'s output channels from <paramref name="offset"/> carry the group" once.</summary>
            private void Visit(string name, long offset, long flattened)
            {
                if (_visited.TryGetValue(name, out long seen))
                {
                    // Concat(A, A), or Concat(A, ReLU(A)): one tensor holds the group's channels twice; a cut would
                    // have to remove both copies, which the group's single offset per layer cannot say.
                    if (seen != offset)
                        Block(GroupBlock.Merge, name, $"'{name}' carries the group's channels twice (at channel {seen} and at channel {offset})");
                    return;
                }
                _visited.Add(name, offset);
                _queue.Enqueue((name, offset, flattened));
            }

            private void Block(GroupBlock why, string? layer, string reason)
            {
                if (_group.Blocked != GroupBlock.None) return;
                _group.Blocked = why;
                _group.Blocker = layer;
                _group.Reason = reason;
            }

            /// <summary>What makes <paramref name="name"/>'s channels: producers to cut, or the layers they pass through.</summary>
            private void Up(string name, long offset)
            {
                // A source that names no layer is a model input ("input", or one of several inputs by name): a source
                // naming nothing is its own diagnostic (MD0022), and no cut is planned on such a model.
                if (!_byName.TryGetValue(name, out var node)) { Block(GroupBlock.Input, null, "the model input's channels are fixed"); return; }
                var kind = node.Kind;
                if (kind is { CanCut: true } && (kind == LayerKind.Conv2d) == _conv && node.Groups == 1)
                {
                    if (offset != 0 || node.Out != _group.Channels)
                        Block(GroupBlock.Merge, name, $"'{name}' has {node.Out} outputs, and only part of them would join the group's {_group.Channels} channels");
                    else _group.Producers.Add(name);
                    return;
                }
                if (kind is { ChannelsPassThrough: true } || IsNorm(kind) || kind == LayerKind.Flatten && _conv && node.FlattensChannels)
                {
                    if (IsNorm(kind)) _group.Norms.Add(new GroupMember(name, offset));
                    Visit(First(node), offset, 0);
                    return;
                }
                if (kind is { IsMerge: true } && !IsChannelConcat(node))
                {
                    _group.Merges.Add(name);
                    foreach (var source in node.Sources)
                    {
                        // One of several model inputs (its channels are not tracked): joined to the group, and fixed.
                        if (source != ModelInput && !_byName.ContainsKey(source)) { Block(GroupBlock.Input, null, "the model input's channels are fixed"); return; }
                        long channels = Channels(source);
                        // A source of one channel broadcasts over the others (a gate): it keeps its channel.
                        if (channels == 1 && _group.Channels != 1 && kind != LayerKind.Concat) continue;
                        if (channels != Channels(name))
                        {
                            Block(GroupBlock.Merge, name, $"'{source}' brings {Describe(channels)} channels to '{name}', which has {Describe(Channels(name))}");
                            return;
                        }
                        Visit(source, offset, 0);
                    }
                    return;
                }
                if (kind == LayerKind.Concat)
                {
                    _group.Merges.Add(name);
                    long start = 0;
                    foreach (var source in node.Sources)
                    {
                        long channels = Channels(source);
                        if (channels < 0) { Block(GroupBlock.Merge, name, $"the channels of '{source}' are not known"); return; }
                        if (offset >= start && offset + _group.Channels <= start + channels) { Visit(source, offset - start, 0); return; }
                        start += channels;
                    }
                    Block(GroupBlock.Merge, name, $"its channels {offset}..{offset + _group.Channels - 1} span more than one of its sources");
                    return;
                }
                Blocked(node, $"the group's channels come from '{name}' ({KindName(node)}), whose outputs the cut cannot remove");
            }

            /// <summary>Every layer that reads <paramref name="name"/>'s channels: passes them on, joins them, or consumes them.</summary>
            private void Down(string name, long offset, long flattened)
            {
                if (name == _output) { Block(GroupBlock.Output, name, $"'{name}' is the model's output, whose shape is fixed"); return; }
                if (!_readers.TryGetValue(name, out var readers)) return;
                foreach (var (reader, index) in readers)
                {
                    var kind = reader.Kind;
                    if (flattened > 0)
                    {
                        // After a Flatten only element-wise layers may run before the Linear that consumes the runs.
                        if (kind is { ChannelsPassThrough: true }) Visit(reader.Name, offset, flattened);
                        else if (kind == LayerKind.Linear && reader.In % flattened == 0) Consume(reader, offset, reader.In / flattened, throughFlatten: true);
                        else Blocked(reader, Cannot(reader));
                    }
                    else if (kind is { ChannelsPassThrough: true } || IsNorm(kind) || kind is { IsMerge: true } && !IsChannelConcat(reader))
                        Visit(reader.Name, offset, 0);
                    else if (kind == LayerKind.Concat)
                    {
                        long start = 0;
                        for (int i = 0; i < index; i++)
                        {
                            long channels = Channels(reader.Sources[i]);
                            if (channels < 0) { Block(GroupBlock.Merge, reader.Name, $"the channels of '{reader.Sources[i]}' are not known"); return; }
                            start += channels;
                        }
                        Visit(reader.Name, start + offset, 0);
                    }
                    else if (kind == LayerKind.Flatten && _conv && reader.FlattensChannels)
                    {
                        long channels = Channels(name);
                        if (channels > 0) Visit(reader.Name, offset, channels);
                        else Blocked(reader, Cannot(reader));
                    }
                    else if (_conv ? kind == LayerKind.Conv2d && reader.Groups == 1 : kind == LayerKind.Linear)
                        Consume(reader, offset, 1);
                    else Blocked(reader, Cannot(reader));
                }
            }

            /// <summary>A Linear or Conv2d reads the group's channels: a Flatten made each a run of <paramref name="spatial"/> inputs.</summary>
            private void Consume(CutNode reader, long offset, long spatial, bool throughFlatten = false)
            {
                // Through a Flatten the run length was checked by the caller (a 1×1 map flattens to one input per channel).
                if (!throughFlatten && spatial == 1 && Channels(Source(reader)) != reader.In)
                {
                    Blocked(reader, Cannot(reader));
                    return;
                }
                _group.Consumers.Add(new GroupMember(reader.Name, offset, spatial));
            }

            private static string First(CutNode node) => node.Sources.Count > 0 ? node.Sources[0] : "";

            private static string Source(CutNode node) => node.Sources.Count == 1 ? First(node) : ModelInput;

            private void Blocked(CutNode node, string reason) =>
                Block(node.Kind == LayerKind.Model ? GroupBlock.ComposedBlock : GroupBlock.Layer, node.Name, reason);

            private string Cannot(CutNode node) => node.Kind == LayerKind.Model
                ? $"its channels reach the composed model '{node.Name}', whose input channels a cut does not change"
                : $"its channels reach '{node.Name}' ({KindName(node)}), which the compiler cannot rewrite for fewer inputs";

            private static string KindName(CutNode node) => node.Kind?.Name ?? "a module of another kind";

            private bool IsNorm(LayerKind? kind) => kind == LayerKind.BatchNorm2d && _conv;

            /// <summary>Whether a Concat joins along the channels: dim 1 of a convolution's (B, C, H, W), the last dim of a Linear's.</summary>
            private bool IsChannelConcat(CutNode node)
            {
                if (node.Kind != LayerKind.Concat) return false;
                int rank = node.Rank > 0 ? node.Rank : _conv ? 4 : 0;
                long dim = node.ConcatDim < 0 && rank > 0 ? node.ConcatDim + rank : node.ConcatDim;
                return _conv ? dim == 1 : dim == -1 || (rank > 0 && dim == rank - 1);
            }

            private readonly Dictionary<string, long> _channels = new(StringComparer.Ordinal);

            /// <summary>The channels of a layer's output (the group's axis), or -1 when they are not known.</summary>
            private long Channels(string name)
            {
                if (name == ModelInput) return _input.Count == 0 ? -1 : _conv ? _input[0] : _input[_input.Count - 1];
                if (_channels.TryGetValue(name, out var known)) return known;
                if (!_byName.TryGetValue(name, out var node)) return -1;
                _channels[name] = -1; // sources name earlier layers (MD0022); a cycle would read "unknown", not recurse
                long channels = -1;
                if (node.Kind is { CanCut: true }) channels = node.Out;
                else if (node.Kind is { ChannelsPassThrough: true } || IsNorm(node.Kind)) channels = Channels(First(node));
                else if (IsChannelConcat(node))
                {
                    channels = 0;
                    foreach (var source in node.Sources)
                    {
                        long c = Channels(source);
                        if (c < 0) { channels = -1; break; }
                        channels += c;
                    }
                }
                else if (node.Kind is { IsMerge: true }) channels = node.Sources.Select(Channels).DefaultIfEmpty(-1).Max();
                _channels[name] = channels;
                return channels;
            }

            private static string Describe(long channels) => channels < 0 ? "an unknown number of" : channels.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        /// <summary>The name a source gives the model input.</summary>
        public const string ModelInput = "input";
    }
}
