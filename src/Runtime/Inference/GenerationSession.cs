using ModelDsl.Runtime.Quantization;
using TorchSharp.Modules;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>
    /// A language model (token ids <c>(1, T)</c> → scores <c>(1, T, V)</c>) fed a growing context one step at a time,
    /// with a key/value cache in each <see cref="TransformerLayer"/>: a step runs the model on the new ids only, so a
    /// new token costs one position instead of the whole context. <see cref="Append"/> returns what the model would
    /// give for the last position of the context cropped to its last <see cref="ContextLength"/> ids.
    /// </summary>
    /// <remarks>
    /// <para>
    /// Scores equal the uncached computation's (the whole window through the model every step) to float32 rounding.
    /// Once the context is longer than <see cref="ContextLength"/>, the window slides by one id per step: every id
    /// then sits at a new position, and with learned positions (<see cref="PositionalEmbedding"/>) every key and value
    /// changes, so no cached one could be used again: from then on each step runs the whole window without the cache,
    /// which is what the uncached path does and costs.
    /// </para>
    /// <para>
    /// The cache serves models whose layers act on each position alone apart from causal Transformer layers and
    /// positions: a generated <c>forward</c> (or its int8 copy) of Embedding, PositionalEmbedding, causal
    /// TransformerBlock, LayerNorm, Linear (float or int8), Dropout and elementwise activations. For any other model
    /// (a hand-written <c>forward</c>, a non-causal block, a convolution over time) the session recomputes the window
    /// every step and says why in <see cref="UncachedReason"/>.
    /// </para>
    /// <para>
    /// With <see cref="QuantizeMode.DynamicInt8"/> Linear layers the scores are not equal to the uncached path's at
    /// float32 rounding: each int8 Linear quantises its input with one scale from the min/max of the whole input
    /// (PyTorch's per-tensor dynamic quantisation), and a cached step's input is the new position alone rather than
    /// the whole window. Both are valid int8 approximations of the float model; they agree to int8 error.
    /// </para>
    /// <para>
    /// While a session is open, the model's <c>forward</c> is the session's (it reads and extends the cache):
    /// dispose the session before training or evaluating the model. One session per model at a time.
    /// </para>
    /// </remarks>
    public sealed class GenerationSession : IDisposable
    {
        private readonly nn.Module<Tensor, Tensor> _model;
        private readonly List<long> _context = new();
        private readonly List<(TransformerLayer Layer, KeyValueCache Cache)> _caches = new();
        private readonly List<PositionalEmbedding> _positions = new();
        private int _cached; // positions the caches hold: the context's first ids
        private bool _disposed;

        /// <summary>Starts a session: attaches an empty cache to every Transformer layer of the model (if it can use one).</summary>
        /// <param name="model">The language model.</param>
        /// <param name="contextLength">The longest context the model takes (its training window); older ids are dropped.</param>
        /// <param name="useCache">Whether to cache keys and values; <c>false</c> recomputes the window every step.</param>
        /// <exception cref="ArgumentOutOfRangeException"><paramref name="contextLength"/> is below 1.</exception>
        /// <exception cref="InvalidOperationException">Another session on the model is still open.</exception>
        public GenerationSession(nn.Module<Tensor, Tensor> model, int contextLength, bool useCache = true)
        {
            ArgumentNullException.ThrowIfNull(model);
            if (contextLength < 1) throw new ArgumentOutOfRangeException(nameof(contextLength), contextLength, "the context length must be at least 1");
            _model = model;
            _model.eval();
            ContextLength = contextLength;
            // Checked before an uncached session returns too: its window would be appended to the open session's caches.
            var layers = model.modules().OfType<TransformerLayer>().ToList();
            if (layers.Any(layer => layer.Cache is not null))
                throw new InvalidOperationException("the model is already in a GenerationSession; dispose that session before starting another");
            UncachedReason = useCache ? WhyNoCache(model) : "the cache was switched off";
            if (UncachedReason is not null) return;

            foreach (var layer in layers)
            {
                var cache = new KeyValueCache(contextLength);
                layer.Cache = cache;
                _caches.Add((layer, cache));
            }
            _positions.AddRange(model.modules().OfType<PositionalEmbedding>());
        }

        /// <summary>The longest context the model sees; older ids are dropped, as <see cref="TextGeneration.Sample"/> does.</summary>
        public int ContextLength { get; }

        /// <summary>Whether steps run on the new ids only (a key/value cache is in use).</summary>
        public bool IsCached => UncachedReason is null;

        /// <summary>Why the session recomputes the whole window every step, or <c>null</c> when it caches.</summary>
        public string? UncachedReason { get; }

        /// <summary>Every id appended so far (the prompt and what followed), including those older than the window.</summary>
        public IReadOnlyList<long> Context => _context;

        /// <summary>
        /// Appends <paramref name="ids"/> to the context and returns the model's scores for the id after them: the last
        /// position of the model's output on the last <see cref="ContextLength"/> ids, shape <c>(V)</c>. Runs in eval
        /// mode (the session puts the model in it) under no-grad; the returned tensor belongs to the caller's dispose scope.
        /// </summary>
        /// <param name="ids">At least one id.</param>
        /// <exception cref="ArgumentException"><paramref name="ids"/> is empty.</exception>
        /// <exception cref="ObjectDisposedException">The session was disposed.</exception>
        public Tensor Append(IReadOnlyList<long> ids)
        {
            ArgumentNullException.ThrowIfNull(ids);
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (ids.Count == 0) throw new ArgumentException("append at least one id", nameof(ids));
            int before = _context.Count;
            _context.AddRange(ids);
            int start = Math.Max(0, _context.Count - ContextLength);
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            if (_model.training) _model.eval();
            // Once the context is longer than the window, the window slides with every id appended: each id moves to
            // a new position, so every key and value changes and nothing cached could be used again. The window then
            // runs whole without the cache, as the uncached path runs it.
            bool cached = IsCached && start == 0;
            if (IsCached && !cached)
            {
                Clear();
                foreach (var (layer, _) in _caches) layer.Cache = null;
            }
            foreach (var positions in _positions) positions.Offset = cached ? _cached : 0;
            try
            {
                // Cached: the ids the caches lack, at the positions after theirs. Otherwise the whole window.
                var logits = _model.call(Ids(cached ? _cached : start));
                if (cached) _cached = _context.Count;
                return logits.select(0, 0).select(0, -1).MoveToOuterDisposeScope();
            }
            catch
            {
                // A layer that threw may have left the caches at different lengths: start again from the window.
                _context.RemoveRange(before, _context.Count - before);
                Clear();
                throw;
            }
            finally
            {
                foreach (var positions in _positions) positions.Offset = 0;
                if (IsCached && !cached)
                    foreach (var (layer, cache) in _caches) layer.Cache = cache;
            }
        }

        /// <summary>Detaches the caches from the model (its forward is the plain one again) and frees them.</summary>
        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var (layer, cache) in _caches)
            {
                if (ReferenceEquals(layer.Cache, cache)) layer.Cache = null;
                cache.Dispose();
            }
            _caches.Clear();
        }

        private Tensor Ids(int from) => tensor(_context.GetRange(from, _context.Count - from).ToArray()).unsqueeze(0);

        private void Clear()
        {
            foreach (var (_, cache) in _caches) cache.Clear();
            _cached = 0;
        }

        /// <summary>
        /// <c>null</c> when running <paramref name="model"/> on new positions with cached keys and values gives what
        /// running it on the whole sequence gives; otherwise why not.
        /// </summary>
        internal static string? WhyNoCache(nn.Module<Tensor, Tensor> model)
        {
            if (!IsSequential(model))
                return $"{model.GetName()} has a hand-written forward, which may mix positions";
            bool anyBlock = false;
            foreach (var (name, module) in model.named_modules())
            {
                switch (module)
                {
                    // The cache follows a chain of layers; a graph's merges and From reads are not walked (yet).
                    case ILayerHost { Summary.IsGraph: true }:
                        return $"'{(name.Length == 0 ? model.GetName() : name)}' is a graph model (From, merges or Output): the key/value cache follows chain models only";
                    case TransformerBlock:
                        anyBlock = true;
                        break;
                    case TransformerLayer layer when !layer.Causal:
                        return $"'{name}' is not causal: its positions attend to later ones, which a new token changes";
                    case TransformerLayer or PositionalEmbedding or Embedding or Linear or DynamicQuantizedLinear or LayerNorm or Dropout
                        or GELU or ReLU or LeakyReLU or SiLU or Tanh or Sigmoid or Identity:
                        break;
                    case nn.Module<Tensor, Tensor> inner when IsSequential(inner):
                        break;
                    default:
                        return $"'{name}' ({module.GetType().Name}) is not known to act on each position alone";
                }
            }
            return anyBlock ? null : $"{model.GetName()} has no TransformerBlock";
        }

        // A generated forward (or Quantize.Dynamic's copy of one) runs the layers one after another and nothing else.
        private static bool IsSequential(nn.Module module) => module is ILayerHost { ForwardIsGenerated: true } or QuantizedSequentialModel;
    }
}
