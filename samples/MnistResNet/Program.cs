using Mnist;

// Train the ResNet as its [Train] declares, then run its optimisation plan (`--help` lists the options);
// `evaluate`, `predict` and `export` use the trained model.
return MnistResNet.Run(args);
