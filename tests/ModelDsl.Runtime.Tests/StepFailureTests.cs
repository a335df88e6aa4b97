using System.IO;
using ModelDsl.Runtime.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>A libtorch error that escapes a step becomes one line naming the step and the layer or loss.</summary>
public sealed class StepFailureTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-failure-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Outputs (B, 3, 2, 2): what cross-entropy with one label per row cannot take.</summary>
    private sealed class Spatial : nn.Module<Tensor, Tensor>
    {
        private readonly TorchSharp.Modules.Linear _lin = nn.Linear(4, 12);
        public Spatial() : base(nameof(Spatial)) => register_module("Lin", _lin);
        public override Tensor forward(Tensor x) => _lin.call(x).reshape(-1, 3, 2, 2);
    }

    /// <summary>A layer that expects 5 features while the data has 4.</summary>
    private sealed class WrongWidth : nn.Module<Tensor, Tensor>
    {
        private readonly TorchSharp.Modules.Linear _first = nn.Linear(5, 3);
        public WrongWidth() : base(nameof(WrongWidth)) => register_module("First", _first);
        public override Tensor forward(Tensor x) => _first.call(x);
    }

    private TrainingOptions Options()
    {
        var data = Path.Combine(_dir, "data.csv");
        File.WriteAllLines(data, Enumerable.Range(0, 40).Select(i => $"{i % 3},{i % 5},{i % 7},1,{i % 3}"));
        return new TrainingOptions
        {
            Plan = new TrainingPlan { ModelName = "M", SampleShape = new long[] { 4 }, Loss = Loss.CrossEntropy, Optimizer = Optimizer.SGD, Data = data, Epochs = 1, BatchSize = 8 },
            CheckpointDirectory = Path.Combine(_dir, "ckpt"),
            PlainProgress = true,
        };
    }

    [Fact]
    public void LossThatCannotTakeTheOutput_IsOneLineNamingTheLossAndStep()
    {
        var e = Assert.Throws<TrainingException>(() => Trainer.Train(Options(), () => new Spatial()));
        Assert.Equal(TrainingHost.UsageError, e.ExitCode);
        Assert.StartsWith("training step 1 (epoch 1) failed in the CrossEntropy loss: ", e.Message);
        Assert.DoesNotContain("\n", e.Message);
        Assert.DoesNotContain("frame #", e.Message);
    }

    [Fact]
    public void LayerThatRejectsItsInput_IsNamed()
    {
        var e = Assert.Throws<TrainingException>(() => Trainer.Train(Options(), () => new WrongWidth()));
        Assert.StartsWith("training step 1 (epoch 1) failed in layer 'First': ", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }
}
