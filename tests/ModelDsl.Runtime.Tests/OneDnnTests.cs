using System.Collections.Generic;
using System.Linq;
using ModelDsl.Runtime.Internal;
using ModelDsl.Runtime.Training;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests
{
    /// <summary>
    /// The trainer's step keeps oneDNN out of convolution backward passes when a channel count is not a multiple of 16
    /// (Internal/OneDnn.cs): with oneDNN there, this small residual CNN's gradients were NaN in the first steps on most
    /// runs at two threads, and differed between runs with one seed.
    /// </summary>
    [Collection(GlobalTorchStateCollection.Name)]
    public sealed class OneDnnTests
    {
        /// <summary>A stem and three residual blocks of 4 channels, 8 inside, as the pruned test models have.</summary>
        private sealed class SmallResidualCnn : nn.Module<Tensor, Tensor>
        {
            private readonly Conv2d _stem = nn.Conv2d(1, 4, 3, padding: 1);
            private readonly ModuleList<nn.Module<Tensor, Tensor>> _blocks = new();
            private readonly Linear _head = nn.Linear(4, 3);

            public SmallResidualCnn() : base(nameof(SmallResidualCnn))
            {
                for (int i = 0; i < 3; i++)
                    _blocks.Add(nn.Sequential(nn.Conv2d(4, 8, 3, padding: 1, bias: false), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 4, 3, padding: 1, bias: false), nn.BatchNorm2d(4)));
                RegisterComponents();
            }

            public override Tensor forward(Tensor x)
            {
                var h = _stem.call(x);
                foreach (var block in _blocks) h = nn.functional.relu(block.call(h) + h);
                return _head.call(h.mean(new long[] { 2, 3 }));
            }
        }

        private static List<double> Train()
        {
            manual_seed(7);
            using var model = new SmallResidualCnn();
            using var optimizer = optim.AdamW(model.parameters(), 1e-3);
            var step = new TrainingStep(model, optimizer, Loss.CrossEntropy, gradientClipNorm: 0);
            var losses = new List<double>();
            for (int i = 0; i < 8; i++)
            {
                using var scope = NewDisposeScope();
                losses.Add(step.Run(randn(8, 1, 8, 8), randint(0, 3, new long[] { 8 })).Loss);
            }
            return losses;
        }

        [Fact]
        public void OddChannelCounts_TrainWithFiniteLosses_EqualOnEveryRun()
        {
            int threads = torch.get_num_threads();
            torch.set_num_threads(2);
            try
            {
                var first = Train();
                Assert.All(first, l => Assert.True(double.IsFinite(l), string.Join(", ", first)));
                for (int run = 0; run < 3; run++)
                    Assert.Equal(first, Train());
            }
            finally
            {
                torch.set_num_threads(threads);
            }
        }

        [Fact]
        public void AtenBackward_IsChosen_ByTheConvolutionsOutputChannels()
        {
            using var odd = nn.Sequential(nn.Conv2d(1, 16, 3), nn.Conv2d(16, 11, 3));
            using var even = nn.Sequential(nn.Conv2d(1, 16, 3), nn.Conv2d(16, 32, 3), nn.Linear(5, 3));
            using var none = nn.Sequential(nn.Linear(5, 3));
            Assert.True(OneDnn.NeedsAtenConvolutionBackward(odd));
            Assert.False(OneDnn.NeedsAtenConvolutionBackward(even));
            Assert.False(OneDnn.NeedsAtenConvolutionBackward(none));
        }
    }
}
