using System.Collections.Generic;
using System.IO;
using ModelDsl.Runtime.Training;
using TorchSharp;
using TorchSharp.Modules;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests.Recompute
{
    /// <summary>A GPT with dropout inside its two Transformer layers: what recomputation must replay exactly.</summary>
    [Model(Input = "B, T", InputType = DType.Int64)]
    [Train(Loss.CrossEntropy, Optimizer.AdamW, LearningRate = 1e-2, Epochs = 1, BatchSize = 8, Seed = 3, SequenceLength = 16,
           Recompute = ModelDsl.Recompute.Blocks)]
    public partial class RecomputedGpt
    {
        [Embedding(16, 32)]                                      public partial Embedding Tokens { get; }
        [PositionalEmbedding(16)]                                public partial PositionalEmbedding Positions { get; }
        [TransformerBlock(Heads = 2, Repeat = 2, Dropout = 0.2)] public partial TransformerBlock Blocks { get; }
        [LayerNorm]                                              public partial LayerNorm Norm { get; }
        [Linear(16)]                                             public partial Linear Head { get; }
    }

    /// <summary>A residual-free convolution block with BatchNorm and dropout, used composed.</summary>
    [Model(Input = "B, 4, 8, 8")]
    public partial class ConvUnit
    {
        [Conv2d(4, 3, Padding = 1)] public partial Conv2d Conv { get; }
        [BatchNorm2d]               public partial BatchNorm2d Norm { get; }
        [ReLU]                      public partial ReLU Act { get; }
        [Dropout(0.2)]              public partial Dropout Drop { get; }
    }

    /// <summary>A CNN of composed blocks: a repeated one (two copies) and a single one (swapped in its slot while recomputing).</summary>
    [Model(Input = "B, 1, 8, 8")]
    [Train(Loss.CrossEntropy, Optimizer.Adam, LearningRate = 1e-2, Epochs = 1, BatchSize = 16, Seed = 5)]
    public partial class ComposedCnn
    {
        [Conv2d(4, 3, Padding = 1)] public partial Conv2d Stem { get; }
        [Block(Repeat = 2)]         public partial ConvUnit Body { get; }
        [Block]                     public partial ConvUnit Last { get; }
        [Flatten]                   public partial Flatten Flat { get; }
        [Linear(3)]                 public partial Linear Output { get; }
    }

    /// <summary>
    /// <see cref="BlockRecompute"/>: gradients and training steps bitwise equal to the plain run's (one thread, dropout
    /// on, so the recomputation must draw the same masks), the state dict and BatchNorm statistics unchanged, and through
    /// the trainer the report's activations against the compiler's plan with <c>--recompute blocks</c>.
    /// </summary>
    [Collection(GlobalTorchStateCollection.Name)]
    public sealed class RecomputeTests(ITestOutputHelper output) : IDisposable
    {
        private readonly int _threads = torch.get_num_threads();
        private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-recompute-").FullName;

        public void Dispose()
        {
            torch.set_num_threads(_threads);
            try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        }

        private static (Tensor X, Tensor Y) GptBatch()
        {
            torch.manual_seed(11);
            return (torch.randint(0, 16, new long[] { 4, 16 }), torch.randint(0, 16, new long[] { 4, 16 }));
        }

        private static (Tensor X, Tensor Y) CnnBatch()
        {
            torch.manual_seed(12);
            return (torch.randn(16, 1, 8, 8), torch.randint(0, 3, 16));
        }

        /// <summary>Two models with the same weights: the plain one and one whose blocks recompute.</summary>
        private static (T Plain, T Recomputed) Pair<T>(Func<T> create) where T : nn.Module<Tensor, Tensor>
        {
            torch.manual_seed(1);
            var plain = create();
            var recomputed = create();
            recomputed.load_state_dict(plain.state_dict());
            return (plain, recomputed);
        }

        private static double Backward(nn.Module<Tensor, Tensor> model, Tensor x, Tensor y)
        {
            model.train();
            torch.manual_seed(42); // the dropout masks
            var output = model.call(x);
            var loss = nn.functional.cross_entropy(output.reshape(-1, output.shape[^1]), y.reshape(-1));
            // As the trainer's step runs it: the CNN's 4-channel convolutions take ATen's backward, not oneDNN's, whose
            // gradients are NaN or irreproducible on such counts (Internal/OneDnn.cs, OneDnnTests).
            ModelDsl.Runtime.Internal.OneDnn.Backward(loss, ModelDsl.Runtime.Internal.OneDnn.NeedsAtenConvolutionBackward(model));
            return loss.item<float>();
        }

        private static void AssertBitwiseEqual(IEnumerable<(string, Tensor)> want, IEnumerable<(string, Tensor)> got, string what)
        {
            int compared = 0;
            foreach (var ((name, a), (otherName, b)) in want.Zip(got))
            {
                Assert.Equal(name, otherName);
                if (!Same(a, b))
                    Assert.Fail($"{what} {name}: max difference {(a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max().item<double>():E3} (of {a.abs().max().to(ScalarType.Float64).item<double>():E3})");
                compared++;
            }
            Assert.True(compared > 0, $"no {what} compared");
        }

        /// <summary>Same shape and every element equal (bitwise for these finite floats).</summary>
        private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.equal(b).all().item<bool>();

        private static IEnumerable<(string, Tensor)> Gradients(nn.Module model) =>
            model.named_parameters().Select(p => (p.name, p.parameter.grad ?? throw new Xunit.Sdk.XunitException($"{p.name} has no gradient")));

        private static IEnumerable<(string, Tensor)> Parameters(nn.Module model) => model.named_parameters().Select(p => (p.name, (Tensor)p.parameter));

        private static IEnumerable<(string, Tensor)> Buffers(nn.Module model) => model.named_buffers().Select(b => (b.name, b.buffer));

        [Fact]
        public void Gpt_WithDropout_GradientsBitwiseEqualToThePlainRun()
        {
            torch.set_num_threads(1);
            var (plain, recomputed) = Pair(() => new RecomputedGpt());
            var (x, y) = GptBatch();
            double plainLoss = Backward(plain, x, y);
            using (BlockRecompute.Apply(recomputed))
            {
                double loss = Backward(recomputed, x, y);
                Assert.Equal(plainLoss, loss);
            }
            AssertBitwiseEqual(Gradients(plain), Gradients(recomputed), "gradient");
            // Dropout ran: other masks give another loss (so the equality above is the replayed masks' doing).
            var (again, _) = Pair(() => new RecomputedGpt());
            again.train();
            torch.manual_seed(43);
            var output = again.call(x);
            Assert.NotEqual(plainLoss, nn.functional.cross_entropy(output.reshape(-1, 16), y.reshape(-1)).item<float>());
        }

        [Fact]
        public void ComposedCnn_GradientsAndBatchNormStatisticsBitwiseEqual_StateDictUnchanged()
        {
            torch.set_num_threads(1);
            var (plain, recomputed) = Pair(() => new ComposedCnn());
            var (x, y) = CnnBatch();
            var keys = recomputed.state_dict().Keys.ToArray();
            double plainLoss = Backward(plain, x, y);
            using (BlockRecompute.Apply(recomputed))
            {
                // Two copies of the repeated block and the single one; the state dict keeps its names while swapped.
                Assert.Equal(keys, recomputed.state_dict().Keys.ToArray());
                Assert.Equal(plainLoss, Backward(recomputed, x, y));
            }
            AssertBitwiseEqual(Gradients(plain), Gradients(recomputed), "gradient");
            // BatchNorm's running statistics moved once, as in the plain run, not again in the recomputation.
            AssertBitwiseEqual(Buffers(plain), Buffers(recomputed), "buffer");
            Assert.Equal(1L, plain.Last.Norm.num_batches_tracked!.item<long>());
            // Put back: the typed property reads the declared block again.
            Assert.IsType<ConvUnit>(recomputed.Last);
        }

        [Fact]
        public void CountBlocks_EachTransformerLayerAndEachComposedCopy()
        {
            Assert.Equal(1, BlockRecompute.CountBlocks(new RecomputedGpt()));   // the TransformerBlock runs its 2 layers each recomputed
            Assert.Equal(2, BlockRecompute.CountBlocks(new ComposedCnn()));     // the Repeated (2 copies) and the single [Block]
        }

        [Fact]
        public void FewTrainingSteps_GiveBitwiseEqualParameters()
        {
            torch.set_num_threads(1);
            foreach (var (name, create, batch) in new (string, Func<nn.Module<Tensor, Tensor>>, (Tensor, Tensor))[]
                     {
                         ("gpt", () => new RecomputedGpt(), GptBatch()),
                         ("cnn", () => new ComposedCnn(), CnnBatch()),
                     })
            {
                var (plain, recomputed) = Pair(create);
                Train(plain, batch);
                using (BlockRecompute.Apply(recomputed)) Train(recomputed, batch);
                AssertBitwiseEqual(Parameters(plain), Parameters(recomputed), name + " parameter");
                if (plain.buffers().Any()) AssertBitwiseEqual(Buffers(plain), Buffers(recomputed), name + " buffer");
            }

            static void Train(nn.Module<Tensor, Tensor> model, (Tensor X, Tensor Y) batch)
            {
                var optimizer = torch.optim.Adam(model.parameters(), 1e-2);
                for (int step = 0; step < 3; step++)
                {
                    using var scope = torch.NewDisposeScope();
                    optimizer.zero_grad();
                    Backward(model, batch.X, batch.Y);
                    optimizer.step();
                }
            }
        }

        [Fact]
        public void NoGrad_RunsTheBlockPlainly_AndTheOutputEqualsThePlainForward()
        {
            var (plain, recomputed) = Pair(() => new RecomputedGpt());
            var (x, _) = GptBatch();
            plain.eval();
            recomputed.eval();
            using var applied = BlockRecompute.Apply(recomputed);
            using (torch.no_grad()) Assert.True(Same(plain.call(x), recomputed.call(x)));
            var withGrad = recomputed.call(x);
            Assert.True(withGrad.requires_grad);
            Assert.True(Same(plain.call(x), withGrad));
        }

        /// <summary>
        /// Trains the Transformer tests' <see cref="Text.TinyLm"/> (two layers, no dropout: the attention keeps per-row
        /// statistics, as the plan's TransformerBlock estimate assumes) through the trainer and returns the report's memory.
        /// </summary>
        private MemoryReport TrainLm(string name, ModelDsl.Recompute recompute)
        {
            string data = Path.Combine(_dir, "input.txt");
            if (!File.Exists(data)) File.WriteAllText(data, string.Concat(Enumerable.Repeat("the cat sat on the mat. ", 60)));
            var options = new TrainingOptions
            {
                Plan = Text.TinyLm.Plan with { Data = data, Recompute = recompute, Epochs = 1, BatchSize = 32 },
                CheckpointDirectory = Path.Combine(_dir, name),
                ReportPath = Path.Combine(_dir, name + ".json"),
                PlainProgress = true,
                Deterministic = true,
                NoOptimize = true,
            };
            Assert.Equal(0, Trainer.Train(options, () => new Text.TinyLm()));
            var memory = TrainingReport.Read(options.ReportPath).GetSection<MemoryReport>("memory")!;
            output.WriteLine($"{name}: activations planned {memory.Planned!.Activations:N0}, measured {memory.Measured.Activations:N0}");
            Assert.True(memory.Measured.Activations is > 0, "activations were not measured");
            return memory;
        }

        [Fact]
        public void Trainer_RecomputeBlocks_ActivationsWithin25PercentOfThePlan_AndBelowThePlainRun()
        {
            var recomputed = TrainLm("blocks", ModelDsl.Recompute.Blocks);
            var plain = TrainLm("plain", ModelDsl.Recompute.None);
            var (planned, measured) = (recomputed.Planned!.Activations!.Value, recomputed.Measured.Activations!.Value);
            Assert.True(Math.Abs(planned - measured) <= 0.25 * measured, $"recomputed: activations planned {planned} bytes, measured {measured}");
            Assert.True(measured < plain.Measured.Activations, $"recomputed {measured} bytes, plain {plain.Measured.Activations}");
            Assert.True(planned < plain.Planned!.Activations);
            // The model state does not change.
            Assert.Equal(plain.Measured.Parameters, recomputed.Measured.Parameters);
        }

        [Fact]
        public void DeclaredRecompute_ReachesTheGeneratedPlan() =>
            Assert.Equal(ModelDsl.Recompute.Blocks, RecomputedGpt.Plan.Recompute);
    }
}
