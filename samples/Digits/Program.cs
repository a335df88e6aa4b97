using System;
using System.Linq;
using Digits;

// The main job: train the CNN as its [Train] declares (`--help` lists the options).
// `dotnet run -c Release --project samples/Digits -- mlp` trains the MLP instead.
if (args.Any(a => a is "--help" or "-h" or "-?"))
{
    // The model's own help gives the usage and lists the options; the choice of model is this program's, so it
    // says it first (as a section of its own: one "Usage:" block, the model's).
    Console.WriteLine("Models (an optional first argument, before the command and the options):");
    Console.WriteLine("  cnn  train DigitsCnn, the convolutional network (the default)");
    Console.WriteLine("  mlp  train DigitsMlp, the multi-layer perceptron");
    Console.WriteLine();
}
return args is ["mlp", .. var rest] ? DigitsMlp.Run(rest)
     : args is ["cnn", .. var cnnArgs] ? DigitsCnn.Run(cnnArgs)
     : DigitsCnn.Run(args);
