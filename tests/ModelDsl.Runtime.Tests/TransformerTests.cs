using System.Collections.Generic;
using System.IO;
using ModelDsl.Runtime.Data;
using ModelDsl.Runtime.Inference;
using ModelDsl.Runtime.Optimization;
using ModelDsl.Runtime.Quantization;
using ModelDsl.Runtime.Tests.Oracle;
using ModelDsl.Runtime.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests.Text
{
    /// <summary>A language model small enough to train in a test: characters of a short text, windows of 16.</summary>
    [Model(Input = "B, T", InputType = DType.Int64)]
    [Train(Loss.CrossEntropy, Optimizer.AdamW, LearningRate = 1e-2, Epochs = 4, BatchSize = 8, Seed = 3, SequenceLength = 16,
           Schedule = Schedule.Cosine, WarmupEpochs = 0.5, ScheduleInterval = ScheduleInterval.Step, GradientClipNorm = 1.0)]
    [Quantize(QuantizeMode.DynamicInt8)]
    public partial class TinyLm
    {
        [Embedding(16, 32)]                       public partial Embedding Tokens { get; }
        [PositionalEmbedding(16)]                 public partial PositionalEmbedding Positions { get; }
        [TransformerBlock(Heads = 2, Repeat = 2)] public partial TransformerBlock Blocks { get; }
        [LayerNorm]                               public partial LayerNorm Norm { get; }
        [Linear(16, TiedTo = nameof(Tokens))]     public partial Linear Head { get; }
    }

    /// <summary>
    /// The Transformer layers against hand-written references and their defining properties (causality, tying), and
    /// a language model trained, sampled and quantised end to end.
    /// </summary>
    [Collection(GlobalTorchStateCollection.Name)]
    public sealed class TransformerTests : IDisposable
    {
        private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-gpt-").FullName;

        public void Dispose() => Directory.Delete(_dir, recursive: true);

        [Theory]
        [InlineData(true)]
        [InlineData(false)]
        public void CausalMask_ALaterTokenNeverChangesAnEarlierPosition(bool causal)
        {
            using var scope = NewDisposeScope();
            manual_seed(11);
            var embed = nn.Embedding(20, 16);
            var block = new TransformerBlock(16, heads: 4, repeat: 2, causal: causal);
            block.eval();
            var ids = randint(0, 20, new long[] { 2, 9 }, dtype: ScalarType.Int64);
            var changed = ids.clone();
            changed[TensorIndex.Colon, 6] = (ids[TensorIndex.Colon, 6] + 1) % 20;

            var a = block.call(embed.call(ids));
            var b = block.call(embed.call(changed));
            var before = a[TensorIndex.Colon, TensorIndex.Slice(0, 6)].sub(b[TensorIndex.Colon, TensorIndex.Slice(0, 6)]).abs().max().item<float>();
            var after = a[TensorIndex.Colon, TensorIndex.Slice(6, null)].sub(b[TensorIndex.Colon, TensorIndex.Slice(6, null)]).abs().max().item<float>();
            Assert.True(after > 1e-3, $"position 6 and later must see the change (max difference {after})");
            if (causal) Assert.Equal(0f, before);
            else Assert.True(before > 1e-3, "without the mask, earlier positions attend to the changed token");
        }

        [Theory]
        [InlineData(true, 4)]
        [InlineData(false, 2)]
        public void Layer_EqualsTheHandWrittenReference(bool causal, int heads)
        {
            using var scope = NewDisposeScope();
            manual_seed(5);
            const long B = 2, T = 7, C = 12;
            var layer = new TransformerLayer(C, heads, mlpRatio: 3, causal: causal);
            var x = randn(B, T, C);
            var actual = layer.call(x);

            // softmax(QKᵀ/√d + mask)·V per head, written out: no scaled_dot_product_attention, no view tricks.
            var norm1 = (LayerNorm)layer.GetLayer("norm1");
            var inProj = (Linear)layer.GetLayer("in_proj");
            var outProj = (Linear)layer.GetLayer("out_proj");
            var norm2 = (LayerNorm)layer.GetLayer("norm2");
            var linear1 = (Linear)layer.GetLayer("linear1");
            var linear2 = (Linear)layer.GetLayer("linear2");
            long d = C / heads;
            var h = nn.functional.layer_norm(x, new[] { C }, norm1.weight, norm1.bias, 1e-5);
            var qkv = h.matmul(inProj.weight!.t()) + inProj.bias!;
            var q = qkv[TensorIndex.Ellipsis, TensorIndex.Slice(0, C)];
            var k = qkv[TensorIndex.Ellipsis, TensorIndex.Slice(C, 2 * C)];
            var v = qkv[TensorIndex.Ellipsis, TensorIndex.Slice(2 * C, 3 * C)];
            var mask = causal ? ones(T, T).triu(1).to_type(ScalarType.Bool) : zeros(T, T).to_type(ScalarType.Bool);
            var headsOut = new List<Tensor>();
            for (long i = 0; i < heads; i++)
            {
                var cols = TensorIndex.Slice(i * d, (i + 1) * d);
                var qi = q[TensorIndex.Ellipsis, cols];
                var ki = k[TensorIndex.Ellipsis, cols];
                var vi = v[TensorIndex.Ellipsis, cols];
                var scores = qi.matmul(ki.transpose(1, 2)) / Math.Sqrt(d);
                scores = scores.masked_fill(mask, double.NegativeInfinity);
                headsOut.Add(scores.softmax(-1).matmul(vi));
            }
            var attention = cat(headsOut, -1).matmul(outProj.weight!.t()) + outProj.bias!;
            var y = x + attention;
            var mlpIn = nn.functional.layer_norm(y, new[] { C }, norm2.weight, norm2.bias, 1e-5);
            var mlp = nn.functional.gelu(mlpIn.matmul(linear1.weight!.t()) + linear1.bias!).matmul(linear2.weight!.t()) + linear2.bias!;
            var expected = y + mlp;

            float error = actual.sub(expected).abs().max().item<float>();
            Assert.True(error < 1e-5f, $"max |layer - reference| = {error}");
        }

        [Fact]
        public void PositionalEmbedding_AddsTheFirstTRows_AndRejectsLongerInput()
        {
            using var scope = NewDisposeScope();
            var positions = new PositionalEmbedding(8, 4);
            var x = randn(3, 5, 4);
            var y = positions.call(x);
            Assert.True(y.allclose(x + positions.weight[TensorIndex.Slice(0, 5)]));
            var e = Assert.Throws<ArgumentException>(() => positions.call(randn(1, 9, 4)));
            Assert.Contains("maxLength = 8", e.Message);
        }

        [Fact]
        public void TiedHead_SharesTheEmbeddingTable_AndIsOneParameter()
        {
            using var scope = NewDisposeScope();
            manual_seed(1);
            var model = new GptZoo();
            var names = model.named_parameters().Select(p => p.name).ToList();
            Assert.Contains("Embed.weight", names);
            Assert.DoesNotContain("Head.weight", names);
            Assert.Equal(GptZoo.Summary.TotalParameters, model.parameters().Sum(p => p.numel()));
            // The state dict keeps both names (as PyTorch's does), so a checkpoint loads either way.
            Assert.Contains("Head.weight", model.state_dict().Keys);

            // One optimiser step moves the shared table once, and the head still reads it.
            var optimizer = torch.optim.SGD(model.parameters(), 0.5);
            var ids = randint(0, 50, new long[] { 2, 6 }, dtype: ScalarType.Int64);
            nn.functional.cross_entropy(model.call(ids).flatten(0, 1), ids.flatten()).backward();
            var grad = model.Embed.weight!.grad!.clone();
            var before = model.Embed.weight!.detach().clone();
            optimizer.step();
            float moved = model.Embed.weight!.detach().sub(before - 0.5 * grad).abs().max().item<float>();
            Assert.True(moved < 1e-6f, $"the table moved {moved} away from one SGD step");
            Assert.True(model.Head.weight!.detach().eq(model.Embed.weight!.detach()).all().item<bool>());
        }

        [Fact]
        public void Quantize_ReachesTheLinearLayersInsideTheBlocks()
        {
            using var scope = NewDisposeScope();
            manual_seed(2);
            var model = new GptZoo();
            model.eval();
            var quantized = Quantize.Dynamic(model, QuantizeMode.DynamicInt8);
            var layers = Quantize.QuantizedLayers(quantized).Select(l => l.Name).ToList();
            // 4 Linear layers per Transformer layer, 3 layers, and the head.
            Assert.Equal(13, layers.Count);
            Assert.Contains("Blocks.1.linear2", layers);
            Assert.Contains("Encoder.0.in_proj", layers);
            Assert.Contains("Head", layers);

            var ids = randint(0, 50, new long[] { 3, 8 }, dtype: ScalarType.Int64);
            using var noGrad = no_grad();
            var expected = model.call(ids);
            var actual = quantized.call(ids);
            float relative = actual.sub(expected).norm().item<float>() / expected.norm().item<float>();
            Assert.True(relative < 0.05f, $"int8 output differs from fp32 by {relative:P1}");
        }

        [Fact]
        public void Generation_IsDeterministicForASeed()
        {
            using var scope = NewDisposeScope();
            manual_seed(4);
            var model = new TinyLm();
            // An untrained tied head on N(0, 1) embeddings is nearly one-hot; scale it so sampling has choices.
            using (no_grad()) model.Tokens.weight!.mul_(0.05);
            long[] Draw(long seed, double temperature = 1.0, int topK = 0) =>
                TextGeneration.Sample(model, new long[] { 1, 2, 3 }, 40, 16, temperature, topK, seed).ToArray();

            var first = Draw(7);
            Assert.Equal(first, Draw(7));
            Assert.NotEqual(first, Draw(8));
            Assert.Equal(40, first.Length);
            Assert.All(first, id => Assert.InRange(id, 0, 15));
            // Top-1 sampling and temperature 0 both take the most likely token.
            Assert.Equal(Draw(1, 0.0), Draw(2, 1.0, topK: 1));
            // The global random stream is not used.
            var state = get_rng_state();
            Draw(9);
            Assert.True(state.eq(get_rng_state()).all().item<bool>());
            Assert.Throws<ArgumentException>(() => TextGeneration.Sample(model, Array.Empty<long>(), 5, 16).ToArray());
        }

        [Fact]
        public void CharCorpus_SplitsTheTextWhereValidationBegins()
        {
            using var corpus = CharCorpus.FromText("abcdefghijklmnopqrst"); // 20 characters
            var (train, validation) = corpus.SplitWindows(4, 0.25);
            using (train)
            using (validation)
            {
                // Train: the first 15 characters → 3 windows; validation: the last 5 → 1 window.
                Assert.Equal(3, train.Count);
                Assert.Equal(1, validation.Count);
                Assert.Equal("abcd", corpus.Decode(train.Features[0].data<long>().ToArray()));
                Assert.Equal("bcde", corpus.Decode(train.Labels[0].data<long>().ToArray()));
                Assert.Equal("pqrs", corpus.Decode(validation.Features[0].data<long>().ToArray()));
                Assert.Equal("qrst", corpus.Decode(validation.Labels[0].data<long>().ToArray()));
            }
        }

        [Fact]
        public void ShortRun_LowersTheLoss_ThenQuantisesAndReportsGenerationSpeed()
        {
            var data = Path.Combine(_dir, "text.txt");
            File.WriteAllText(data, string.Concat(Enumerable.Repeat("the cat sat on the mat. ", 120)));
            var options = new TrainingOptions
            {
                Plan = TinyLm.Plan with { Data = data },
                CheckpointDirectory = Path.Combine(_dir, "ckpt"),
                ReportPath = Path.Combine(_dir, "report.json"),
                PlainProgress = true,
            };
            Assert.Equal(0, Trainer.Train(options, () => new TinyLm()));

            var report = TrainingReport.Read(options.ReportPath);
            Assert.True(report.History[^1].TrainLoss < 0.5 * report.History[0].TrainLoss,
                $"train loss {report.History[0].TrainLoss:F3} → {report.History[^1].TrainLoss:F3}");
            Assert.True(report.ValLoss < Math.Log(8), $"validation loss {report.ValLoss} (uniform over the 8 characters: {Math.Log(8):F3})");
            Assert.Equal(report.SamplesPerSecond * 16, report.TokensPerSecond!.Value, 6);
            Assert.InRange(report.History[^1].TrainAccuracy, 0.0, 1.0);
            // The schedule runs per step: the first step of the run is early in the half-epoch warm-up.
            Assert.InRange(report.History[0].LearningRate, 1e-6, 0.25 * TinyLm.Plan.LearningRate);

            var optimized = report.GetSection<OptimizationReport>("optimized")!;
            Assert.NotNull(optimized.ValLoss);
            Assert.True(Math.Abs(optimized.ValLoss!.Value - report.ValLoss!.Value) < 0.1, $"int8 {optimized.ValLoss} vs fp32 {report.ValLoss}");
            Assert.True(optimized.GenerationTokensPerSecondBefore > 0 && optimized.GenerationTokensPerSecondAfter > 0);
        }
    }
}
