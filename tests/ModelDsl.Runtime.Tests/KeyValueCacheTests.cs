using System.Collections.Generic;
using ModelDsl.Runtime.Inference;
using ModelDsl.Runtime.Quantization;
using ModelDsl.Runtime.Tests.Oracle;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests.Text
{
    /// <summary>A language model with no Transformer layer: nothing for a key/value cache to keep.</summary>
    [Model(Input = "B, T", InputType = DType.Int64)]
    public partial class BigramLm
    {
        [Embedding(16, 8)] public partial Embedding Tokens { get; }
        [Linear(16)]       public partial Linear Head { get; }
    }

    /// <summary>
    /// Generation with a key/value cache (<see cref="GenerationSession"/>) against the uncached path, which runs the
    /// whole window through the model for every id: the same scores at every step (across the window's end too),
    /// the same ids drawn, and one position fed per step while the context fits the window.
    /// </summary>
    [Collection(GlobalTorchStateCollection.Name)]
    public sealed class KeyValueCacheTests
    {
        private const int Window = 16; // TinyLm's PositionalEmbedding(16)

        /// <summary>A TinyLm whose untrained head is not nearly one-hot, so sampling has choices.</summary>
        private static TinyLm NewModel(int seed)
        {
            manual_seed(seed);
            var model = new TinyLm();
            using (no_grad()) model.Tokens.weight!.mul_(0.05);
            model.eval();
            return model;
        }

        /// <summary>Records how many positions each call of the model's Transformer block receives.</summary>
        private static List<long> CountPositions(nn.Module<Tensor, Tensor> model)
        {
            var fed = new List<long>();
            var blocks = model.modules().OfType<TransformerBlock>().Single();
            blocks.register_forward_pre_hook((_, input) => { fed.Add(input.shape[1]); return input; });
            return fed;
        }

        /// <summary>The uncached computation written out: the last <see cref="Window"/> ids through the model, last position.</summary>
        private static Tensor Reference(nn.Module<Tensor, Tensor> model, List<long> context)
        {
            int start = Math.Max(0, context.Count - Window);
            using var noGrad = no_grad();
            return model.call(tensor(context.GetRange(start, context.Count - start).ToArray()).unsqueeze(0))[0, -1];
        }

        [Fact]
        public void CachedScores_EqualTheWholeWindowsScores_AtEveryStep_AcrossTheWindowsEnd()
        {
            using var scope = NewDisposeScope();
            var model = NewModel(21);
            var reference = new TinyLm();
            reference.load_state_dict(model.state_dict());
            reference.eval();
            var fed = CountPositions(model);

            // Chunks of 1 to 4 ids: a prompt, single ids, and several ids onto a filled cache (the masked path).
            var chunks = new[] { 3, 1, 1, 2, 1, 4, 1, 1, 1, 1, 3, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
            var random = new Random(5);
            var context = new List<long>();
            using var session = new GenerationSession(model, Window);
            Assert.True(session.IsCached, session.UncachedReason);
            var expectedFed = new List<long>();
            float worst = 0;
            foreach (int size in chunks)
            {
                var ids = Enumerable.Range(0, size).Select(_ => (long)random.Next(16)).ToArray();
                int startBefore = Math.Max(0, context.Count - Window);
                context.AddRange(ids);
                int start = Math.Max(0, context.Count - Window);
                expectedFed.Add(start == startBefore ? size : context.Count - start);

                var actual = session.Append(ids);
                var expected = Reference(reference, context);
                float error = actual.sub(expected).abs().max().item<float>();
                worst = Math.Max(worst, error);
                Assert.True(error < 1e-5f, $"after {context.Count} ids: max |cached - uncached| = {error}");
            }
            Assert.True(context.Count > 2 * Window, "the test must cross the window's end");
            Assert.Equal(context, session.Context);
            // Within the window only the new ids run; once it slides, the whole window (every id has a new position).
            Assert.Equal(expectedFed, fed);
            Assert.Contains(1L, fed);
            Assert.Contains((long)Window, fed);
        }

        [Theory]
        [InlineData(0.0, 0)]
        [InlineData(1.0, 0)]
        [InlineData(0.8, 5)]
        public void Sample_DrawsTheSameIds_WithAndWithoutTheCache(double temperature, int topK)
        {
            using var scope = NewDisposeScope();
            var model = NewModel(4);
            var fed = CountPositions(model);
            var prompt = new long[] { 1, 2, 3 };

            var uncached = TextGeneration.Sample(model, prompt, 3 * Window, Window, temperature, topK, seed: 7, useCache: false).ToArray();
            long uncachedPositions = fed.Sum();
            fed.Clear();
            var cached = TextGeneration.Sample(model, prompt, 3 * Window, Window, temperature, topK, seed: 7).ToArray();

            Assert.Equal(uncached, cached);
            Assert.True(uncached.Distinct().Count() > 2, "the draws should vary");
            // The first window's ids cost one position each with the cache.
            Assert.Equal(new long[] { 3 }.Concat(Enumerable.Repeat(1L, Window - 3)), fed.Take(Window - 2));
            Assert.True(fed.Sum() < uncachedPositions, $"cached {fed.Sum()} positions, uncached {uncachedPositions}");
        }

        [Fact]
        public void Int8_ScoresAgreeToInt8Error_AndEqualExactlyWhereTheWholeWindowRuns()
        {
            using var scope = NewDisposeScope();
            var model = NewModel(9);
            var int8 = Quantize.Dynamic(model, QuantizeMode.DynamicInt8);
            var reference = Quantize.Dynamic(model, QuantizeMode.DynamicInt8);
            var random = new Random(3);
            var context = new List<long> { 1, 2, 3 };
            using var session = new GenerationSession(int8, Window);
            Assert.True(session.IsCached, session.UncachedReason);

            var actual = session.Append(context);
            Assert.True(actual.sub(Reference(reference, context)).abs().max().item<float>() < 1e-5f, "the prompt runs as one window");
            float worstInside = 0, worstFloat = 0;
            for (int step = 0; step < 2 * Window; step++)
            {
                long id = random.Next(16);
                context.Add(id);
                actual = session.Append(new[] { id });
                var expected = Reference(reference, context);
                float relative = actual.sub(expected).norm().item<float>() / expected.norm().item<float>();
                if (context.Count > Window)
                {
                    // The window slides: it runs whole, without the cache, the same computation as the uncached path.
                    Assert.True(actual.sub(expected).abs().max().item<float>() < 1e-5f, $"after {context.Count} ids the window runs whole");
                }
                else
                {
                    // One position: each int8 Linear quantises it with its own scale, not the whole window's.
                    worstInside = Math.Max(worstInside, relative);
                    var exact = Reference(model, context);
                    worstFloat = Math.Max(worstFloat, expected.sub(exact).norm().item<float>() / exact.norm().item<float>());
                }
            }
            Assert.True(worstInside > 0, "a cached int8 step quantises one position, so its scores differ slightly");
            // Of the order of int8's own error against the float model (3.4% and 2.9% here).
            Assert.True(worstInside < 3 * worstFloat, $"cached int8 differs from uncached int8 by {worstInside:P2} (int8 vs float: {worstFloat:P2})");
        }

        [Fact]
        public void ModelsTheCacheCannotServe_AreRecomputed_AndSayWhy()
        {
            using var scope = NewDisposeScope();
            manual_seed(6);
            var zoo = new GptZoo(); // a non-causal block after the causal one
            using (var session = new GenerationSession(zoo, 8))
            {
                Assert.False(session.IsCached);
                Assert.Contains("'Encoder.0' is not causal", session.UncachedReason);
                var scores = session.Append(new long[] { 4, 5 });
                Assert.Equal(0f, Reference8(zoo, new List<long> { 4, 5 }).sub(scores).abs().max().item<float>());
            }
            using (var session = new GenerationSession(new BigramLm(), 8))
                Assert.Contains("has no TransformerBlock", session.UncachedReason);
            using (var session = new GenerationSession(NewModel(1), Window, useCache: false))
                Assert.Equal("the cache was switched off", session.UncachedReason);

            static Tensor Reference8(nn.Module<Tensor, Tensor> model, List<long> context)
            {
                using var noGrad = no_grad();
                return model.call(tensor(context.ToArray()).unsqueeze(0))[0, -1];
            }
        }

        [Fact]
        public void Dispose_GivesTheModelItsPlainForwardBack_AndOneSessionAtATime()
        {
            using var scope = NewDisposeScope();
            var model = NewModel(2);
            var ids = tensor(new long[] { 3, 1, 4, 1, 5 }).unsqueeze(0);
            using var noGrad = no_grad();
            var before = model.call(ids);

            var session = new GenerationSession(model, Window);
            session.Append(new long[] { 7, 7, 7 });
            Assert.Throws<InvalidOperationException>(() => new GenerationSession(model, Window));
            // An uncached session would still run the model, appending its window to the open session's caches.
            Assert.Throws<InvalidOperationException>(() => new GenerationSession(model, Window, useCache: false));
            session.Dispose();
            Assert.Throws<ObjectDisposedException>(() => session.Append(new long[] { 1 }));

            Assert.Equal(0f, model.call(ids).sub(before).abs().max().item<float>()); // the plain forward again
            Assert.All(model.Blocks.Layers, layer => Assert.Null(layer.Cache));
            using var again = new GenerationSession(model, Window);
            Assert.True(again.IsCached);
        }
    }
}
