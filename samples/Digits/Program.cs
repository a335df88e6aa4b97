using Digits;

// The main job: train the CNN as its [Train] declares (`--help` lists the options).
// `dotnet run -c Release --project samples/Digits -- mlp` trains the MLP instead.
return args is ["mlp", .. var rest] ? DigitsMlp.Run(rest)
     : args is ["cnn", .. var cnnArgs] ? DigitsCnn.Run(cnnArgs)
     : DigitsCnn.Run(args);
