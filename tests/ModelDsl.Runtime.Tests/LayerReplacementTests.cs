using ModelDsl;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests.Replacement
{
    [Model(Input = "B, 6")]
    public partial class SwapNet
    {
        [Linear(4)] public partial Linear Hidden { get; }
        [ReLU]      public partial ReLU Act { get; }
        [Linear(3)] public partial Linear Head { get; }
    }

    /// <summary>A stand-in for a replacement of another type (an int8 Linear): doubles its input.</summary>
    internal sealed class Doubler : nn.Module<Tensor, Tensor>
    {
        public Doubler() : base(nameof(Doubler)) { }
        public override Tensor forward(Tensor x) => x * 2;
    }

    public class LayerReplacementTests
    {
        [Fact]
        public void GeneratedForward_RunsHooks_BecauseItCallsLayersThroughCall()
        {
            var model = new SwapNet();
            int calls = 0;
            model.Hidden.register_forward_pre_hook((m, x) => { calls++; return x; });
            model.call(torch.ones(2, 6));
            Assert.Equal(1, calls);
        }

        [Fact]
        public void ReplaceLayer_SameType_ChangesForwardPropertyAndStateDictTogether()
        {
            torch.manual_seed(1);
            var model = new SwapNet();
            var narrower = nn.Linear(4, 3);
            var previous = model.ReplaceLayer("Head", narrower);

            Assert.NotSame(previous, narrower);
            Assert.Same(narrower, model.Head);
            Assert.Same(narrower, model.GetLayer("Head"));
            Assert.Equal(new[] { "Hidden", "Act", "Head" }, model.named_children().Select(c => c.name).ToArray());
            var weight = model.state_dict()["Head.weight"];
            Assert.True(weight.allclose(narrower.weight!, 0, 0));

            using var x = torch.randn(5, 6);
            var expected = narrower.call(model.Act.call(model.Hidden.call(x)));
            Assert.True(model.call(x).allclose(expected));
        }

        [Fact]
        public void ReplaceLayer_OtherType_RunsInForward_AndThePropertySaysWhatHappened()
        {
            var model = new SwapNet();
            model.ReplaceLayer("Act", new Doubler());
            using var x = torch.randn(2, 6);
            var expected = model.Head.call(model.Hidden.call(x) * 2);
            Assert.True(model.call(x).allclose(expected));

            var error = Assert.Throws<LayerReplacedException>(() => model.Act);
            Assert.Contains("Doubler", error.Message);
            Assert.Equal("Act", error.Layer);
            Assert.EndsWith("run the layer through its slot instead: GetLayer(nameof(Act)).call(x)", error.Message);
            Assert.IsType<Doubler>(((ILayerHost)model).GetLayer("Act"));
        }

        [Fact]
        public void ComposedModel_RegistersEachLayerOnce_UnderItsName()
        {
            // TorchSharp would also register a child's module-typed fields ('__Up') when it joins a parent.
            var stack = new Oracle.Stack();
            Assert.DoesNotContain(stack.state_dict().Keys, k => k.Contains("__"));
            Assert.Equal(Oracle.Stack.Summary.TotalParameters, stack.parameters().Sum(p => p.numel()));
        }

        [Fact]
        public void ReplaceLayer_UnknownName_ListsTheLayers()
        {
            var model = new SwapNet();
            var error = Assert.Throws<ArgumentException>(() => model.ReplaceLayer("Output", nn.Linear(4, 3)));
            Assert.Contains("Hidden, Act, Head", error.Message);
            Assert.Equal(new[] { "Hidden", "Act", "Head" }, SwapNet.LayerNames);
        }
    }
}
