using ModelDsl;
using TorchSharp.Modules;

namespace ModelDslTrainer;

// Four features per sample, three classes (data/train.csv: the features, then the class index, one sample a line).
// The compiler infers each layer's input size and checks every shape: write [Linear(8, 32)] below and the build
// fails on the 8 with MD0101, the input has 4 features. Summary holds the layer table it computed.
[Model(Input = "B, 4")]
[Train(Loss.CrossEntropy, Optimizer.AdamW, LearningRate = 1e-2, Epochs = 20, BatchSize = 16, Seed = 1,
       Data = "data/train.csv", TestData = "data/test.csv")]
public partial class Classifier
{
    [Linear(32)] public partial Linear Hidden { get; }   // in-features inferred: 4
    [ReLU]       public partial ReLU Act { get; }
    [Linear(3)]  public partial Linear Output { get; }   // in-features inferred: 32
}
