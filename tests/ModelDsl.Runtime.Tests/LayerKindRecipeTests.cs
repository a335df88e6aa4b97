using ModelDsl.Runtime.Optimization;
using ModelDsl.Runtime.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests.Recipe
{
    /// <summary>An MLP with [LeakyReLU], the kind added by the "adding a layer kind" recipe (README.md, Architecture).</summary>
    [Model(Input = "B, 6")]
    public partial class LeakyMlp
    {
        [Linear(8)]      public partial Linear Hidden { get; }
        [LeakyReLU(0.2)] public partial LeakyReLU Act { get; }
        [Linear(3)]      public partial Linear Output { get; }
    }

    /// <summary>
    /// The recipe's kind runs: the generated model computes PyTorch's leaky_relu with the declared slope, its summary
    /// is the compiler's, the structured-cut walk passes through it at run time as at compile time, and
    /// Quantize.Dynamic copies it.
    /// </summary>
    [Collection(GlobalTorchStateCollection.Name)]
    public sealed class LayerKindRecipeTests
    {
        [Fact]
        public void LeakyMlp_RunsLeakyReLUWithTheDeclaredSlope()
        {
            using var scope = NewDisposeScope();
            manual_seed(3);
            var model = new LeakyMlp();
            var x = randn(5, 6);
            var h = model.Hidden.forward(x);
            Assert.True((h < 0).any().item<bool>(), "the input should reach the negative side of the slope");
            // max(0, h) + 0.2 · min(0, h), written out rather than through TorchSharp's leaky_relu.
            var expected = model.Output.forward(h.clamp_min(0) + 0.2 * h.clamp_max(0));
            Assert.True(model.forward(x).allclose(expected, rtol: 1e-6, atol: 1e-7));
            Assert.Equal(0.2, model.Act.negative_slope, 12);
            Assert.Equal(("Act", "LeakyReLU", "(B, 8)", 0L), (LeakyMlp.Summary.Layers[1].Name, LeakyMlp.Summary.Layers[1].Kind, LeakyMlp.Summary.Layers[1].OutputShape, LeakyMlp.Summary.Layers[1].Parameters));
        }

        [Fact]
        public void StructuredCutWalk_PassesThroughLeakyReLU_AtRunTime()
        {
            using var scope = NewDisposeScope();
            var model = new LeakyMlp();
            var group = OptimizationPipeline.Group(model, "Hidden");
            Assert.Empty(group.Norms);
            Assert.Equal(new[] { "Output" }, group.Consumers.Select(c => c.Layer));
        }

        [Fact]
        public void QuantizeDynamic_QuantizesTheModel_AndCopiesLeakyReLUInASequential()
        {
            using var scope = NewDisposeScope();
            manual_seed(4);
            var model = new LeakyMlp();
            model.eval();
            var x = randn(4, 6);
            // int8 weights: close to the float model.
            Assert.True(Quantize.Dynamic(model, QuantizeMode.DynamicInt8).forward(x).allclose(model.forward(x), rtol: 0.05, atol: 0.05));
            // A Sequential's stateless layers are copied by their factories (ModuleRewriter.Copy): the slope survives.
            var sequential = nn.Sequential(("Hidden", model.Hidden), ("Act", nn.LeakyReLU(0.2)), ("Output", model.Output));
            var quantized = Quantize.Dynamic(sequential, QuantizeMode.DynamicInt8);
            Assert.Contains(quantized.modules(), m => m is LeakyReLU { negative_slope: 0.2 });
            Assert.True(quantized.forward(x).allclose(model.forward(x), rtol: 0.05, atol: 0.05));
        }
    }
}
