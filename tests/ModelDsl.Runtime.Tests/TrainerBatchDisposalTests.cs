using System.Collections.Generic;
using System.IO;
using ModelDsl.Runtime.Data;
using ModelDsl.Runtime.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using TensorDataset = ModelDsl.Runtime.Data.TensorDataset;

namespace ModelDsl.Runtime.Tests.BatchDisposal
{
    [Model(Input = "B, 2")]
    [Train(ModelDsl.Loss.CrossEntropy, Optimizer.SGD, LearningRate = 0.1, Epochs = 2, BatchSize = 4, ValidationFraction = 0.25, Seed = 3)]
    public partial class TwoClass
    {
        [Linear(2)] public partial Linear Out { get; }
    }

    /// <summary>A single process that remembers every batch it hands the trainer.</summary>
    internal sealed class RecordingStrategy : ITrainingStrategy
    {
        private readonly SingleProcessStrategy _inner = new();
        public List<Tensor> Yielded { get; } = new();
        public int Rank => 0;
        public int WorldSize => 1;
        public void Start(nn.Module model, long stepsTaken) { }
        public long BatchCount(TensorDataset data, int batchSize) => _inner.BatchCount(data, batchSize);
        public IEnumerable<(Tensor X, Tensor Y)> Batches(TensorDataset data, int batchSize, long seed, int epoch)
        {
            foreach (var (x, y) in _inner.Batches(data, batchSize, seed, epoch))
            {
                Yielded.Add(x);
                Yielded.Add(y);
                yield return (x, y);
            }
        }
        public bool AllFinite(bool finite) => finite;
        public void SynchronizeGradients(nn.Module model) { }
        public Divergence? AfterStep(nn.Module model, long step, double loss, bool applied) => _inner.AfterStep(model, step, loss, applied);
        public Divergence? EndEpoch(nn.Module model) => null;
        public void SumAcrossRanks(double[] values) { }
        public Dictionary<string, byte[]>? SaveState() => null;
        public void RestoreState(IReadOnlyDictionary<string, byte[]>? state) { }
        public void Finish(nn.Module model, TrainingReport report) { }
        public void Dispose() { }
    }

    /// <summary>
    /// The trainer frees each batch with its step: batches are assembled before the step's dispose scope opens, so
    /// without that they waited for the finalizer (native memory the GC does not see, freed on another thread).
    /// </summary>
    [Collection(GlobalTorchStateCollection.Name)]
    public sealed class TrainerBatchDisposalTests : IDisposable
    {
        private readonly string _dir = Directory.CreateTempSubdirectory("modeldsl-batches-").FullName;

        public void Dispose() => Directory.Delete(_dir, recursive: true);

        private string Data()
        {
            var path = Path.Combine(_dir, "data.csv");
            File.WriteAllLines(path, Enumerable.Range(0, 24).Select(i => FormattableString.Invariant($"{i % 7 - 3},{i % 5 - 2},{i % 2}")));
            return path;
        }

        [Fact]
        public void TrainingBatches_AreDisposedAfterTheirStep()
        {
            var options = new TrainingOptions
            {
                Plan = TwoClass.Plan with { Data = Data() },
                CheckpointDirectory = Path.Combine(_dir, "ckpt"),
                PlainProgress = true,
                Deterministic = true,
            };
            using var strategy = new RecordingStrategy();
            Assert.Equal(0, Trainer.Train(options, () => new TwoClass(), strategy));

            // 18 training rows in batches of 4, two epochs: 5 batches each, an x and a y per batch.
            Assert.Equal(2 * 5 * 2, strategy.Yielded.Count);
            Assert.All(strategy.Yielded, t => Assert.True(t.IsInvalid, "a training batch outlived its step"));
        }

        [Fact]
        public void EvaluationBatches_AreDisposedAfterTheirBatch()
        {
            using var data = new TensorDataset(randn(3000, 2), randint(0, 2, new long[] { 3000 }, dtype: ScalarType.Int64));
            manual_seed(1);
            using var model = new TwoClass();
            long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            var (loss, _) = Trainer.Evaluate(model, data, TwoClass.Plan, CPU);
            long after = DisposeScopeManager.Statistics.ThreadTotalLiveCount;

            Assert.True(double.IsFinite(loss));
            // Three batches of 1024: before, each left its x and y behind for the finalizer.
            Assert.Equal(before, after);
        }
    }
}
