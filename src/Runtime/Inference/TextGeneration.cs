using System.Diagnostics;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>
    /// Autoregressive sampling from a language model (token ids <c>(B, T)</c> → scores <c>(B, T, V)</c>), as nanoGPT's
    /// <c>generate</c>: crop the context to the model's window, scale the last position's scores by 1/temperature,
    /// keep the top k, sample from the softmax, append, repeat. The model runs through a <see cref="GenerationSession"/>,
    /// whose key/value cache spares recomputing the context for each new id.
    /// </summary>
    public static class TextGeneration
    {
        /// <summary>
        /// Yields <paramref name="maxNewTokens"/> sampled token ids, one at a time as each is drawn (so a caller can print
        /// them as they come). The model runs in eval mode under no-grad; the draws use their own generator seeded by
        /// <paramref name="seed"/>, so a seed gives the same text every time and the global random stream is untouched.
        /// </summary>
        /// <param name="model">The language model.</param>
        /// <param name="prompt">The ids to continue; at least one.</param>
        /// <param name="maxNewTokens">How many ids to draw.</param>
        /// <param name="contextLength">The longest context the model takes (its training window); older ids are dropped.</param>
        /// <param name="temperature">Divides the scores: below 1 sharper, above 1 flatter; 0 always takes the most likely id.</param>
        /// <param name="topK">Sample among the k most likely ids only; 0 is all of them.</param>
        /// <param name="seed">Seed of the sampling generator.</param>
        /// <param name="useCache">Whether to keep a key/value cache (<see cref="GenerationSession"/>), so each new id costs one
        /// position rather than the whole context; for float models the ids drawn are the same either way (with int8 layers the
        /// scores agree to int8 error, see <see cref="GenerationSession"/>). <c>false</c> recomputes the window
        /// every step. Models the cache cannot serve are recomputed either way.</param>
        /// <exception cref="ArgumentException">An empty prompt, or a count, length, temperature or k out of range.</exception>
        public static IEnumerable<long> Sample(nn.Module<Tensor, Tensor> model, IReadOnlyList<long> prompt, int maxNewTokens, int contextLength,
            double temperature = 1.0, int topK = 0, long seed = 0, bool useCache = true)
        {
            ArgumentNullException.ThrowIfNull(model);
            ArgumentNullException.ThrowIfNull(prompt);
            if (prompt.Count == 0) throw new ArgumentException("the prompt needs at least one token", nameof(prompt));
            if (maxNewTokens < 0) throw new ArgumentOutOfRangeException(nameof(maxNewTokens), maxNewTokens, "the number of tokens to generate must be 0 or more");
            if (contextLength < 1) throw new ArgumentOutOfRangeException(nameof(contextLength), contextLength, "the context length must be at least 1");
            if (!(temperature >= 0) || double.IsInfinity(temperature)) throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "temperature must be 0 or a positive number");
            if (topK < 0) throw new ArgumentOutOfRangeException(nameof(topK), topK, "top-k must be 0 (off) or a positive number of tokens");
            return SampleCore(model, prompt, maxNewTokens, contextLength, temperature, topK, seed, useCache);
        }

        private static IEnumerable<long> SampleCore(nn.Module<Tensor, Tensor> model, IReadOnlyList<long> prompt, int maxNewTokens, int contextLength,
            double temperature, int topK, long seed, bool useCache)
        {
            using var session = new GenerationSession(model, contextLength, useCache);
            using var generator = new Generator((ulong)seed);
            IReadOnlyList<long> feed = prompt;
            for (int i = 0; i < maxNewTokens; i++)
            {
                long next;
                // The scope and no-grad are per token: a caller may stop enumerating at any point.
                using (var scope = NewDisposeScope())
                using (no_grad())
                {
                    var logits = session.Append(feed);
                    if (temperature == 0)
                    {
                        next = logits.argmax().item<long>();
                    }
                    else
                    {
                        logits = logits / temperature;
                        if (topK > 0 && topK < logits.shape[0])
                        {
                            var kth = logits.topk(topK).values[-1];
                            logits = logits.masked_fill(logits.lt(kth), double.NegativeInfinity);
                        }
                        next = nn.functional.softmax(logits, 0).multinomial(1, generator: generator).item<long>();
                    }
                }
                feed = new[] { next };
                yield return next;
            }
        }

        /// <summary>Tokens per second of <see cref="Sample"/> drawing <paramref name="tokens"/> ids after a one-token prompt (after a short warm-up).</summary>
        public static double TokensPerSecond(nn.Module<Tensor, Tensor> model, int contextLength, int tokens = 200, long seed = 0, bool useCache = true)
        {
            foreach (var _ in Sample(model, new long[] { 0 }, 8, contextLength, 1.0, 0, seed, useCache)) { }
            var clock = Stopwatch.StartNew();
            int drawn = 0;
            foreach (var _ in Sample(model, new long[] { 0 }, tokens, contextLength, 1.0, 0, seed, useCache)) drawn++;
            return drawn / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
        }
    }
}
