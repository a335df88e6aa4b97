using System;
using Digits;
using static TorchSharp.torch;

Console.WriteLine(DigitsMlp.Summary);
Console.WriteLine(DigitsCnn.Summary);
manual_seed(0);
using var mlp = new DigitsMlp();
using var x = randn(4, 64);
using var y = mlp.forward(x);
Console.WriteLine($"forward: {string.Join("x", x.shape)} -> {string.Join("x", y.shape)}");
