using System.Collections.Generic;
using System.IO;
using ModelDsl.Layers;
using ModelDsl.Runtime.Onnx;
using ModelDsl.Runtime.Optimization;
using ModelDsl.Runtime.Quantization;
using ModelDsl.Runtime.Tests.Onnx;
using ModelDsl.Runtime.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests.Graphs
{
    // A residual block with a BatchNorm, a projection shortcut, a concatenation of two branches and a channel gate
    // that broadcasts (B, 8, 1, 1) over (B, 8, H, W); the output is not the last layer.
    [Model(Input = "B, 2, 6, 6", Output = nameof(Head))]
    public partial class GraphZoo
    {
        [Conv2d(8, 3, Padding = 1)]                          public partial Conv2d Stem { get; }
        [Conv2d(8, 3, Padding = 1)]                          public partial Conv2d Conv1 { get; }
        [BatchNorm2d]                                        public partial BatchNorm2d Norm1 { get; }
        [ReLU]                                               public partial ReLU Act1 { get; }
        [Add(nameof(Act1), nameof(Stem))]                    public partial Add Residual { get; }
        [Conv2d(4, 1, Stride = 2, From = nameof(Residual))]  public partial Conv2d Down { get; }
        [Conv2d(4, 1, Stride = 2, From = "input")]           public partial Conv2d Skip { get; }
        [Concat(nameof(Down), nameof(Skip), Dim = -3)]       public partial Concat Joined { get; }
        [AdaptiveAvgPool2d(1)]                               public partial AdaptiveAvgPool2d Squeeze { get; }
        [Sigmoid]                                            public partial Sigmoid Gate { get; }
        [Multiply(nameof(Joined), nameof(Gate))]             public partial Multiply Gated { get; }
        [Flatten]                                            public partial Flatten Flat { get; }
        [Linear(5)]                                          public partial Linear Head { get; }
    }

    // Unstructured pruning and int8 on a graph model: a residual MLP.
    [Model(Input = "B, 8")]
    [Train(Loss.CrossEntropy, Optimizer.SGD, LearningRate = 0.05, Epochs = 1, BatchSize = 16, ValidationFraction = 0.2)]
    [Prune(PruneMethod.L1Unstructured, 0.5, Targets = new[] { nameof(Hidden) })]
    [Quantize(QuantizeMode.DynamicInt8)]
    public partial class ResidualMlp
    {
        [Linear(16)]                          public partial Linear Hidden { get; }
        [ReLU]                                public partial ReLU Act { get; }
        [Linear(16, From = "input")]          public partial Linear Project { get; }
        [Add(nameof(Act), nameof(Project))]   public partial Add Sum { get; }
        [Linear(3)]                           public partial Linear Output { get; }
    }

    // BatchNorm folding: Norm1 reads Conv1, which the Add reads too (not folded); Norm2 reads Conv2 alone (folded).
    [Model(Input = "B, 2, 4, 4")]
    public partial class FoldGraph
    {
        [Conv2d(3, 3, Padding = 1)]             public partial Conv2d Conv1 { get; }
        [BatchNorm2d]                           public partial BatchNorm2d Norm1 { get; }
        [Add(nameof(Norm1), nameof(Conv1))]     public partial Add Sum { get; }
        [Conv2d(3, 3, Padding = 1, Bias = false)] public partial Conv2d Conv2 { get; }
        [BatchNorm2d]                           public partial BatchNorm2d Norm2 { get; }
    }

    [Model(Input = "B, 4, H, W")]
    public partial class ResBlock
    {
        [Conv2d(4, 4, 3, Padding = 1)]  public partial Conv2d Conv1 { get; }
        [ReLU]                          public partial ReLU Act { get; }
        [Add(nameof(Act), "input")]     public partial Add Residual { get; }
    }

    [Model(Input = "B, 1, 5, 5")]
    public partial class ResStack
    {
        [Conv2d(4, 3, Padding = 1)]  public partial Conv2d Stem { get; }
        [Block(Repeat = 3)]          public partial ResBlock Stage1 { get; }
        [Flatten]                    public partial Flatten Flat { get; }
        [Linear(2)]                  public partial Linear Head { get; }
    }

    /// <summary>
    /// Graph models at run time: libtorch as the oracle for every layer's inferred shape (merges included), the
    /// generated forward against a walk of the summary's sources, unstructured pruning and int8 through the pipeline,
    /// BatchNorm folding only where the BatchNorm is its layer's one reader, ONNX export, repeated blocks' names.
    /// </summary>
    [Collection(GlobalTorchStateCollection.Name)]
    public sealed class GraphModelTests : IDisposable
    {
        private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-graph-").FullName;

        public void Dispose() => Directory.Delete(_dir, recursive: true);

        public static IEnumerable<object[]> Models() => new[] { new object[] { "GraphZoo" }, new object[] { "ResidualMlp" }, new object[] { "FoldGraph" }, new object[] { "ResStack" } };

        private static (nn.Module<Tensor, Tensor> Model, ModelSummary Summary) Create(string name) => name switch
        {
            "GraphZoo" => (new GraphZoo(), GraphZoo.Summary),
            "ResidualMlp" => (new ResidualMlp(), ResidualMlp.Summary),
            "FoldGraph" => (new FoldGraph(), FoldGraph.Summary),
            "ResStack" => (new ResStack(), ResStack.Summary),
            _ => throw new ArgumentException(name),
        };

        /// <summary>Each layer run by hand on its sources' real outputs (merges as torch.add/mul/cat): every shape as inferred.</summary>
        [Theory]
        [MemberData(nameof(Models))]
        public void EveryLayer_ProducesTheInferredShape_AndForwardReturnsTheOutputLayer(string name)
        {
            using var scope = NewDisposeScope();
            manual_seed(1);
            var (model, summary) = Create(name);
            model.eval();
            var input = randn(Concrete(summary.Input));
            var host = (ILayerHost)model;
            Assert.Same(summary, host.Summary);

            var values = new Dictionary<string, Tensor> { [ModelSummary.InputName] = input };
            foreach (var layer in summary.Layers)
            {
                var sources = layer.Sources.Select(s => values[s]).ToArray();
                var module = host.GetLayer(layer.Name);
                var y = module switch
                {
                    Add => torch.add(sources[0], sources[1]),
                    Multiply => torch.mul(sources[0], sources[1]),
                    Concat concat => torch.cat(sources, concat.Dim),
                    _ => ((nn.Module<Tensor, Tensor>)module).call(sources[0]),
                };
                Assert.True(Concrete(layer.OutputShape).SequenceEqual(y.shape),
                    $"{name}.{layer.Name} ({layer.Kind}): compiler inferred {layer.OutputShape}, libtorch produced ({string.Join(", ", y.shape)})");
                values[layer.Name] = y;
            }
            using var noGrad = no_grad();
            var output = model.call(input);
            Assert.Equal(0f, (output - values[summary.OutputLayer!]).abs().max().item<float>());
            Assert.Equal(Concrete(summary.Output), output.shape);
            Assert.Equal(summary.TotalParameters, model.parameters().Sum(p => p.numel()));
        }

        [Fact]
        public void Summary_ShowsEachLayersSources_AndTheMergeKinds()
        {
            var summary = GraphZoo.Summary;
            Assert.True(summary.IsGraph);
            Assert.Equal("Head", summary.OutputLayer);
            Assert.Equal(new[] { "Act1", "Stem" }, summary["Residual"]!.Sources);
            Assert.Equal(new[] { "input" }, summary["Skip"]!.Sources);
            Assert.Equal(new[] { "Squeeze" }, summary["Gate"]!.Sources);
            Assert.Equal(new[] { "Add", "Concat", "Multiply" }, summary.Layers.Where(l => l.Sources.Count > 1).Select(l => l.Kind));
            Assert.Equal(-3, ((Concat)new GraphZoo().GetLayer("Joined")).Dim);
            Assert.Contains("From", summary.ToString().Split('\n')[2], StringComparison.Ordinal);
            // A chain model's summary fills in each layer's predecessor and keeps its table.
            Assert.False(global::Digits.DigitsCnn.Summary.IsGraph);
            Assert.Equal(new[] { "input" }, global::Digits.DigitsCnn.Summary.Layers[0].Sources);
            Assert.Equal(new[] { global::Digits.DigitsCnn.Summary.Layers[0].Name }, global::Digits.DigitsCnn.Summary.Layers[1].Sources);
            Assert.DoesNotContain("From", global::Digits.DigitsCnn.Summary.ToString(), StringComparison.Ordinal);
        }

        [Fact]
        public void UnstructuredPruningAndInt8_RunOnAGraphModel_AsTheCompilerComputed()
        {
            var data = Path.Combine(_dir, "data.csv");
            var random = new Random(3);
            File.WriteAllLines(data, Enumerable.Range(0, 80).Select(i =>
                string.Join(",", Enumerable.Range(0, 8).Select(_ => random.Next(0, 9))) + "," + (i % 3)));
            var options = new TrainingOptions
            {
                Plan = ResidualMlp.Plan with { Data = data },
                CheckpointDirectory = Path.Combine(_dir, "ckpt"),
                ReportPath = Path.Combine(_dir, "report.json"),
                PlainProgress = true,
            };
            Assert.Equal(0, Trainer.Train(options, () => new ResidualMlp()));
            var report = TrainingReport.Read(Path.Combine(_dir, "report.json")).GetSection<OptimizationReport>("optimized")!;
            Assert.Equal(new[] { "Prune L1Unstructured 0.5 of Hidden", "Quantize DynamicInt8" }, report.Passes);
            Assert.Equal(0.5, report.LayerSparsity["Hidden"]);
            Assert.Equal(ResidualMlp.Plan.ParametersAfterPasses, report.ParamCountAfter);

            // The int8 model loads back with int8 layers in the Linear slots, and its forward still runs the graph.
            using var loaded = ResidualMlp.Load(report.ExportPath!);
            Assert.All(new[] { "Hidden", "Project", "Output" }, n => Assert.IsType<DynamicQuantizedLinear>(loaded.GetLayer(n)));
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            Assert.Equal(new long[] { 4, 3 }, loaded.call(randn(4, 8)).shape);
        }

        [Fact]
        public void BatchNormFolding_FoldsOnlyWhereTheBatchNormIsItsLayersOneReader_AndKeepsTheOutputs()
        {
            using var scope = NewDisposeScope();
            manual_seed(2);
            using var model = new FoldGraph();
            using (no_grad())
                foreach (var bn in model.modules().OfType<BatchNorm2d>())
                {
                    bn.running_mean!.normal_(0, 0.5);
                    bn.running_var!.uniform_(0.5, 2.0);
                }
            model.eval();
            var x = randn(4, 2, 4, 4);
            var before = model.call(x).detach();
            Assert.Equal(new[] { "Norm2" }, OptimizationPipeline.FoldBatchNorms(model, ""));
            Assert.IsType<BatchNorm2d>(model.GetLayer("Norm1"));
            Assert.IsType<FoldedBatchNorm>(model.GetLayer("Norm2"));
            var after = model.call(x);
            Assert.True((before - after).abs().max().item<float>() < 1e-5f);
        }

        [Fact]
        public void OnnxExport_OfAGraphModel_MatchesOrt()
        {
            using var scope = NewDisposeScope();
            manual_seed(4);
            using var model = new GraphZoo();
            model.eval();
            var input = randn(3, 2, 6, 6);
            var proto = OnnxExport.Build(model, GraphZoo.Signature);
            Assert.Contains(proto.Graph.Node, n => n.OpType == "Add");
            Assert.Contains(proto.Graph.Node, n => n.OpType == "Concat");
            Assert.Contains(proto.Graph.Node, n => n.OpType == "Mul");
            using var ort = new OrtRunner(OnnxExport.ToBytes(model, GraphZoo.Signature));
            using var noGrad = no_grad();
            var ours = model.call(input);
            var theirs = ort.Run(input);
            Assert.Equal(ours.shape, theirs.shape);
            Assert.True((ours - theirs).abs().max().item<float>() < 1e-4f);
        }

        [Fact]
        public void RepeatedBlock_HasIndependentCopies_NamedAsNnSequential()
        {
            using var model = new ResStack();
            var names = model.state_dict().Keys.ToArray();
            Assert.Equal(new[] { "Stem.weight", "Stem.bias", "Stage1.0.Conv1.weight", "Stage1.0.Conv1.bias", "Stage1.1.Conv1.weight", "Stage1.1.Conv1.bias",
                "Stage1.2.Conv1.weight", "Stage1.2.Conv1.bias", "Head.weight", "Head.bias" }, names);
            var copies = ((Repeated)model.GetLayer("Stage1")).Copies.Cast<ResBlock>().ToArray();
            Assert.Equal(3, copies.Select(c => c.Conv1.weight!.Handle).Distinct().Count());
            Assert.Same(copies[0], model.Stage1);
        }

        private static long[] Concrete(string shape) =>
            shape.Trim('(', ')').Split(',').Select(d => d.Trim()).Select(d => long.TryParse(d, out var n) ? n : 3).ToArray();
    }
}
