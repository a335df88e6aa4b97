using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// Averages gradients across the ranks of a <see cref="ProcessGroup"/> the way PyTorch's
/// <c>DistributedDataParallel</c> reducer does (SEMANTICS.md §3): parameters are grouped into buckets per dtype and
/// device, filled in reverse parameter order (the order gradients become ready, last layer first), the first bucket
/// closing at 1 MiB and the others at <c>bucketSizeMB</c>; each bucket's gradients are copied into one flat buffer,
/// multiplied by 1/world size, all-reduced with SUM and copied back.
/// </summary>
/// <remarks>
/// <para>Call <see cref="Synchronize()"/> after every <c>backward()</c> and before the optimiser step; afterwards every
/// rank holds the same averaged gradients. A parameter without a gradient on this rank (unused in this forward)
/// contributes zeros, and receives the average as its gradient, so all ranks step the same parameters (PyTorch's
/// <c>find_unused_parameters=True</c>, except that a parameter no rank used gets a zero gradient, not none).</para>
/// <para><see cref="EnableOverlap"/> starts each bucket's all-reduce while backward is still running. TorchSharp
/// 0.107 has no gradient hooks on tensors (<c>register_hook</c>) and no backward hooks on modules, so the signal
/// comes from a forward pre-hook on every module that owns parameters: it passes the module's input through an
/// identity autograd function whose backward runs after the module's parameter gradients are accumulated (libtorch's
/// CPU engine runs a node's <c>AccumulateGrad</c> children first). That needs the model's forward to call its
/// submodules through <c>call()</c> (as <c>Sequential</c> does), not <c>forward()</c>; modules called more than
/// once per forward, parameters shared between modules, and the first layer (whose input needs no gradient) are
/// reduced in <see cref="Synchronize()"/> instead. Buckets are always started in bucket order, so every rank issues
/// the same collectives in the same order.</para>
/// </remarks>
public sealed class GradientReducer : IDisposable
{
    private const double MiB = 1024 * 1024;

    private readonly ProcessGroup _group;
    private readonly Parameter[] _parameters;
    private readonly GradientBucket[] _buckets;
    private readonly int[] _bucketOf;
    private readonly Tensor[] _buffers;
    private readonly long[] _bucketElements;
    private Tensor? _extra;
    private readonly IntPtr[] _slot; // where each parameter's gradient sits in its bucket's buffer (IntPtr.Zero: not yet)
    private readonly bool[] _viewPending; // the gradient was copied in this step: it becomes its slot's view at CopyBack
    private readonly Work?[] _works;
    private readonly int[] _pending;
    private readonly bool[] _ready;
    private readonly List<Action> _hooks = new();
    private readonly Dictionary<nn.Module, ModuleState> _modules = new(ReferenceEqualityComparer.Instance);
    private int _nextBucket;
    private bool _disposed;

    /// <summary>Builds the buckets for <paramref name="parameters"/> (those that require a gradient; duplicates once).</summary>
    /// <param name="group">The ranks to average over.</param>
    /// <param name="parameters">The model's parameters in definition order (<c>model.parameters()</c>).</param>
    /// <param name="bucketSizeMB">The cap of every bucket after the first, in MiB (PyTorch's <c>bucket_cap_mb</c>, default 25).</param>
    /// <param name="firstBucketSizeMB">The cap of the first bucket, in MiB (PyTorch's <c>_DEFAULT_FIRST_BUCKET_BYTES</c>, 1 MiB).</param>
    /// <exception cref="ArgumentOutOfRangeException">A bucket size is not positive.</exception>
    public GradientReducer(ProcessGroup group, IEnumerable<Parameter> parameters, double bucketSizeMB = PlanDefaults.BucketSizeMB, double firstBucketSizeMB = 1)
    {
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(parameters);
        if (!(bucketSizeMB > 0))
            throw new ArgumentOutOfRangeException(nameof(bucketSizeMB), bucketSizeMB, "bucket_cap_mb must be positive.");
        if (!(firstBucketSizeMB > 0))
            throw new ArgumentOutOfRangeException(nameof(firstBucketSizeMB), firstBucketSizeMB, "The first bucket's size must be positive.");
        _group = group;
        var seen = new HashSet<IntPtr>();
        _parameters = parameters.Where(p => p.requires_grad && seen.Add(p.Handle)).ToArray();
        _buckets = AssignBuckets(_parameters, (long)(firstBucketSizeMB * MiB), (long)(bucketSizeMB * MiB));
        _bucketOf = new int[_parameters.Length];
        foreach (var bucket in _buckets)
            foreach (int p in bucket.ParameterIndices)
                _bucketOf[p] = bucket.Index;
        _buffers = new Tensor[_buckets.Length];
        _bucketElements = _buckets.Select(b => b.ParameterIndices.Sum(p => _parameters[p].numel())).ToArray();
        _works = new Work?[_buckets.Length];
        _slot = new IntPtr[_parameters.Length];
        _viewPending = new bool[_parameters.Length];
        _pending = new int[_buckets.Length];
        _ready = new bool[_parameters.Length];
        ResetIteration();
    }

    /// <summary>The buckets, in the order their all-reduces are issued.</summary>
    public IReadOnlyList<GradientBucket> Buckets => _buckets;

    /// <summary>The parameters being averaged (trainable, each once), in the order given.</summary>
    public IReadOnlyList<Parameter> Parameters => _parameters;

    /// <summary>Total time spent inside collectives and waiting for them, over all <see cref="Synchronize()"/> calls.</summary>
    public TimeSpan CommunicationTime { get; private set; }

    /// <summary>
    /// Whether the next forward's backward may start buckets (PyTorch's <c>require_backward_grad_sync</c>, which DDP's
    /// <c>no_sync()</c> clears): set it to false for the first k − 1 micro-batches of a gradient-accumulation group, so
    /// that the overlap hooks launch nothing while gradients only accumulate, and back to true before the last
    /// micro-batch's forward. Without <see cref="EnableOverlap"/> nothing starts during backward anyway. Default true.
    /// </summary>
    public bool RequireGradientSync { get; set; } = true;

    /// <summary>How many buckets the last <see cref="Synchronize()"/> found already started during backward.</summary>
    public int BucketsStartedDuringBackward { get; private set; }

    /// <summary>
    /// Computes PyTorch's bucket assignment (<c>compute_bucket_assignment_by_size</c> over the gradient-ready order):
    /// parameters are visited last to first, grouped by dtype and device; a bucket closes when its bytes reach its
    /// cap, the first cap of each group being <paramref name="firstCapBytes"/> and the later ones
    /// <paramref name="capBytes"/>; the buckets still open at the end close last, in the reverse of the order their
    /// dtype first appeared (the iteration order of the <c>std::unordered_map</c> PyTorch keeps them in, as built with
    /// libstdc++; checked against PyTorch 1.13 in the tests). The order only decides which all-reduce goes first.
    /// </summary>
    public static GradientBucket[] AssignBuckets(IReadOnlyList<Tensor> parameters, long firstCapBytes, long capBytes)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        var result = new List<(List<int> Indices, long Bytes, long Cap, ScalarType Dtype, Device Device)>();
        var open = new Dictionary<string, (List<int> Indices, long Bytes, int CapIndex, ScalarType Dtype, Device Device)>();
        var order = new List<string>();
        for (int i = parameters.Count - 1; i >= 0; i--)
        {
            var p = parameters[i];
            string key = $"{p.dtype}/{p.device}";
            if (!open.TryGetValue(key, out var bucket))
            {
                bucket = (new List<int>(), 0, 0, p.dtype, p.device);
                order.Add(key);
            }
            bucket.Indices.Add(i);
            bucket.Bytes += p.numel() * p.element_size();
            long cap = bucket.CapIndex == 0 ? firstCapBytes : capBytes;
            if (bucket.Bytes >= cap)
            {
                result.Add((bucket.Indices, bucket.Bytes, cap, bucket.Dtype, bucket.Device));
                bucket = (new List<int>(), 0, 1, bucket.Dtype, bucket.Device);
            }
            open[key] = bucket;
        }
        for (int k = order.Count - 1; k >= 0; k--)
        {
            string key = order[k];
            var bucket = open[key];
            if (bucket.Indices.Count > 0)
                result.Add((bucket.Indices, bucket.Bytes, bucket.CapIndex == 0 ? firstCapBytes : capBytes, bucket.Dtype, bucket.Device));
        }
        return result.Select((b, index) => new GradientBucket(index, b.Indices.ToArray(), b.Bytes, b.Cap, b.Dtype)).ToArray();
    }

    /// <summary>
    /// Starts buckets' all-reduces during backward, as soon as all their gradients are ready (see the remarks on the
    /// class for how and when this applies). Call once, before training; <see cref="Synchronize()"/> is still needed
    /// after every backward.
    /// </summary>
    /// <param name="model">The model whose parameters this reducer averages.</param>
    /// <returns>How many modules got the hook.</returns>
    public int EnableOverlap(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_group.WorldSize == 1)
            return 0;
        var index = new Dictionary<IntPtr, int>();
        for (int i = 0; i < _parameters.Length; i++)
            index[_parameters[i].Handle] = i;
        var owners = new Dictionary<int, int>();
        var candidates = new List<(nn.Module<Tensor, Tensor> Module, int[] Parameters)>();
        foreach (var module in model.modules())
        {
            int[] own = module.named_parameters(recurse: false)
                .Select(np => index.TryGetValue(np.parameter.Handle, out int i) ? i : -1)
                .Where(i => i >= 0).ToArray();
            if (own.Length == 0)
                continue;
            foreach (int p in own)
                owners[p] = owners.TryGetValue(p, out int n) ? n + 1 : 1;
            if (module is nn.Module<Tensor, Tensor> hookable)
                candidates.Add((hookable, own));
        }
        int hooked = 0;
        foreach (var (module, own) in candidates)
        {
            // A parameter owned by two modules (tied weights) is complete only after both have run backward.
            int[] exclusive = own.Where(p => owners[p] == 1).ToArray();
            if (exclusive.Length == 0 || _modules.ContainsKey(module))
                continue;
            var state = new ModuleState(this, exclusive);
            _modules[module] = state;
            _hooks.Add(module.register_forward_pre_hook((m, input) => state.OnForward(input)).remove);
            hooked++;
        }
        return hooked;
    }

    /// <summary>
    /// Averages every parameter's gradient across the ranks (starting the buckets not yet started, waiting for all)
    /// and leaves the result in <c>.grad</c> on every rank. A no-op in a group of one.
    /// </summary>
    /// <exception cref="DistributedException">A collective failed.</exception>
    public void Synchronize()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_group.WorldSize == 1)
            return;
        BucketsStartedDuringBackward = _nextBucket;
        var clock = Stopwatch.StartNew();
        // Without the overlap hooks every bucket is reduced here with the blocking all-reduce, whose tuned algorithms
        // are faster than the non-blocking schedules. The choice follows the configuration (hooks or not), never
        // what happened in this backward, so every rank makes the same kind of call: MPI does not match a blocking
        // collective with a non-blocking one.
        bool blocking = _modules.Count == 0;
        while (_nextBucket < _buckets.Length)
            Start(_nextBucket++, blocking);
        using (no_grad())
        {
            for (int b = 0; b < _buckets.Length; b++)
            {
                if (_works[b] is { } work)
                {
                    work.Wait();
                    work.Dispose();
                    _works[b] = null;
                }
                CopyBack(b);
            }
        }
        CommunicationTime += clock.Elapsed;
        ResetIteration();
    }

    /// <summary>
    /// <see cref="Synchronize()"/>, with <paramref name="extra"/> carried in the same all-reduce as the last bucket and
    /// summed over the ranks (not averaged; left as it is in a group of one): DDP's step sends its finiteness vote and
    /// rank 0's buffers this way, so a step takes one collective instead of three. <paramref name="extra"/> is 1-D, of
    /// the last bucket's dtype and device (<see cref="Buckets"/>); with no bucket it is all-reduced alone. Not with
    /// <see cref="EnableOverlap"/>, whose last bucket may start during backward, before the extra values exist.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="extra"/> is not 1-D or not of the last bucket's dtype.</exception>
    /// <exception cref="InvalidOperationException">Overlap is enabled.</exception>
    /// <exception cref="DistributedException">A collective failed.</exception>
    public void Synchronize(Tensor extra)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(extra);
        if (extra.dim() != 1)
            throw new ArgumentException($"The extra values must be 1-D, got {extra.dim()} dimensions.", nameof(extra));
        if (_modules.Count > 0)
            throw new InvalidOperationException("Extra values cannot travel with the gradients when buckets start during backward (EnableOverlap).");
        if (_buckets.Length > 0 && !CanCarry(extra))
            throw new ArgumentException($"The extra values must be {_buckets[^1].Dtype} on the last bucket's device, got {extra.dtype} on {extra.device}.", nameof(extra));
        if (_group.WorldSize == 1)
            return;
        if (_buckets.Length == 0)
        {
            var clock = Stopwatch.StartNew();
            _group.AllReduce(extra, ReduceOp.Sum);
            CommunicationTime += clock.Elapsed;
            return;
        }
        _extra = extra;
        try { Synchronize(); }
        finally { _extra = null; }
    }

    /// <summary>
    /// Whether <paramref name="tensor"/>'s values can travel with the last bucket (<see cref="Synchronize(Tensor)"/>): it has
    /// that bucket's dtype and device. False when there is no bucket.
    /// </summary>
    public bool CanCarry(Tensor tensor)
    {
        if (_buckets.Length == 0) return false;
        var first = _parameters[_buckets[^1].ParameterIndices[0]];
        return tensor.dtype == _buckets[^1].Dtype && tensor.device_type == first.device_type && tensor.device_index == first.device_index;
    }

    /// <summary>Zeros of the last bucket's dtype and device (float32 on the CPU without a bucket), for <see cref="Synchronize(Tensor)"/>.</summary>
    public Tensor ExtraValues(long count) => _buckets.Length == 0
        ? zeros(count)
        : zeros(count, _buckets[^1].Dtype, _parameters[_buckets[^1].ParameterIndices[0]].device);

    /// <summary>Releases the bucket buffers and removes the hooks.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        foreach (var work in _works)
            work?.Dispose();
        foreach (var remove in _hooks)
            remove();
        foreach (var buffer in _buffers)
            buffer?.Dispose();
    }

    private void ResetIteration()
    {
        _nextBucket = 0;
        for (int b = 0; b < _buckets.Length; b++)
            _pending[b] = _buckets[b].ParameterIndices.Count;
        Array.Clear(_ready);
        foreach (var state in _modules.Values)
            state.Calls = 0;
    }

    private void MarkReady(int[] parameterIndices)
    {
        foreach (int p in parameterIndices)
        {
            if (_ready[p])
                continue;
            _ready[p] = true;
            _pending[_bucketOf[p]]--;
        }
        var clock = Stopwatch.StartNew();
        while (_nextBucket < _buckets.Length && _pending[_nextBucket] == 0)
            Start(_nextBucket++, blocking: false);
        // Open MPI moves a non-blocking collective forward only inside MPI calls: poll the ones in flight.
        for (int b = 0; b < _nextBucket; b++)
            _works[b]?.IsCompleted();
        CommunicationTime += clock.Elapsed;
    }

    /// <remarks>
    /// After its first reduction each gradient is a view of its place in the bucket's buffer (PyTorch's
    /// <c>gradient_as_bucket_view=True</c>): the optimiser's <c>zero_grad</c> zeroes it in place and backward accumulates
    /// into it, so later steps copy nothing in or out and the gradients take no memory beside the buckets. A gradient
    /// that is not its slot's view (the first step, or code that replaced or cleared it) is copied in and becomes the view.
    /// </remarks>
    private void Start(int b, bool blocking)
    {
        var bucket = _buckets[b];
        using var _ = no_grad();
        long total = _bucketElements[b], extra = ExtraElements(b);
        if (_buffers[b] is null || _buffers[b].numel() != total + extra)
        {
            _buffers[b]?.Dispose();
            var first = _parameters[bucket.ParameterIndices[0]];
            _buffers[b] = empty(total + extra, first.dtype, first.device).DetachFromDisposeScope();
            foreach (int p in bucket.ParameterIndices)
                _slot[p] = IntPtr.Zero; // the gradients still point into the old buffer
        }
        var buffer = _buffers[b];
        long offset = 0;
        foreach (int p in bucket.ParameterIndices)
        {
            var parameter = _parameters[p];
            long n = parameter.numel();
            using var grad = parameter.grad;
            if (grad is null || _slot[p] == IntPtr.Zero || TensorMemory.DataPointer(grad) != _slot[p])
            {
                using var slice = buffer.narrow(0, offset, n);
                if (grad is null)
                    slice.zero_();
                else
                    slice.copy_(grad.reshape(-1));
                _slot[p] = TensorMemory.DataPointer(slice);
                _viewPending[p] = true;
            }
            offset += n;
        }
        // DDP multiplies by 1/world size on the way into the bucket, then sums (reducer.cpp, mark_variable_ready_dense).
        using (var gradients = buffer.narrow(0, 0, total))
            gradients.mul_(1.0 / _group.WorldSize);
        if (extra > 0)
        {
            using var tail = buffer.narrow(0, total, extra);
            tail.copy_(_extra!); // summed, not averaged
        }
        if (blocking)
            _group.AllReduce(buffer, ReduceOp.Sum);
        else
            _works[b] = _group.AllReduceAsync(buffer, ReduceOp.Sum);
    }

    private void CopyBack(int b)
    {
        var buffer = _buffers[b];
        long offset = 0;
        foreach (int p in _buckets[b].ParameterIndices)
        {
            var parameter = _parameters[p];
            long n = parameter.numel();
            if (_viewPending[p])
            {
                // The averaged gradient becomes the slot's view, which later backwards accumulate into.
                using var slice = buffer.narrow(0, offset, n);
                using var shaped = slice.view(parameter.shape); // held: the GC must not finalize it mid-call (README, "Tensor temporaries")
                parameter.grad = shaped;
                _viewPending[p] = false;
            }
            offset += n;
        }
        if (ExtraElements(b) is > 0 and long extra)
        {
            using var tail = buffer.narrow(0, offset, extra);
            _extra!.copy_(tail);
        }
    }

    /// <summary>How many extra values travel in bucket <paramref name="b"/>'s all-reduce: the last one's, during <see cref="Synchronize(Tensor)"/>.</summary>
    private long ExtraElements(int b) => b == _buckets.Length - 1 && _extra is not null ? _extra.numel() : 0;

    /// <summary>The per-module half of the overlap path: counts forward calls and signals readiness from backward.</summary>
    private sealed class ModuleState
    {
        private readonly GradientReducer _reducer;
        private readonly int[] _parameters;

        public ModuleState(GradientReducer reducer, int[] parameters)
        {
            _reducer = reducer;
            _parameters = parameters;
        }

        public int Calls { get; set; }

        public Tensor OnForward(Tensor input)
        {
            if (!is_grad_enabled() || !input.requires_grad || !_reducer.RequireGradientSync)
                return input;
            Calls++;
            return GradientReadySignal.apply(input, (Action)OnBackward);
        }

        private void OnBackward()
        {
            // A module run twice in one forward gets its gradient in two parts: wait for Synchronize.
            if (Calls == 1 && !_reducer._disposed)
                _reducer.MarkReady(_parameters);
        }
    }

    /// <summary>An identity whose backward reports that the gradient has reached the module's input.</summary>
    private sealed class GradientReadySignal : autograd.SingleTensorFunction<GradientReadySignal>
    {
        public override string Name => nameof(GradientReadySignal);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            ctx.save_data("ready", vars[1]);
            return ((Tensor)vars[0]).alias();
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        {
            ((Action)ctx.get_data("ready"))();
            return new List<Tensor> { grad_output, null! };
        }
    }
}

/// <summary>One bucket of a <see cref="GradientReducer"/>: parameters reduced together in one flat all-reduce.</summary>
/// <param name="Index">Position in the order the all-reduces are issued.</param>
/// <param name="ParameterIndices">Indices into <see cref="GradientReducer.Parameters"/>, in the order they sit in the buffer (gradient-ready order).</param>
/// <param name="Bytes">The bucket's size in bytes.</param>
/// <param name="CapBytes">The cap that closed (or would have closed) it.</param>
/// <param name="Dtype">The dtype of every gradient in it.</param>
public sealed record GradientBucket(int Index, IReadOnlyList<int> ParameterIndices, long Bytes, long CapBytes, ScalarType Dtype);
