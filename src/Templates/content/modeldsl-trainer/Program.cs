// The whole training program: a command line (--epochs, --lr, --data, --help, ...), data loading, a progress bar,
// a checkpoint after every epoch and the test accuracy at the end, generated from the attributes on Classifier.
//
//   dotnet run                      train as declared
//   dotnet run -- --epochs 2        a quick run
//   dotnet run -- evaluate          score the saved checkpoint on the test data
return ModelDslTrainer.Classifier.Run(args);
