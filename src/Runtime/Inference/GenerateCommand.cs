using System.CommandLine;
using System.Text;
using ModelDsl.Runtime.Data;
using ModelDsl.Runtime.Training;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>
    /// <c>generate</c> for a language model: continues a prompt with sampled characters, printing each as it is drawn.
    /// The vocabulary is the training text's (the declared <c>Data</c>, or <c>--data</c>), as in training.
    /// </summary>
    internal static class GenerateCommand
    {
        public const string Name = "generate";

        public static Command Create<TModel>(TrainingPlan plan, Func<TModel> create) where TModel : nn.Module<Tensor, Tensor>
        {
            var command = new ModelCommandBuilder(plan, Name, $"Generate text with a trained {plan.ModelName}, printing it as it is sampled")
                .WithModel();
            var data = command.Add(new Option<string>("--data") { Description = $"The training text, whose characters are the vocabulary (declared: {plan.Data})", DefaultValueFactory = _ => plan.Data, HelpName = "TEXT" });
            var prompt = command.Add(new Option<string>("--prompt") { Description = "Text to continue (default: a new line)", DefaultValueFactory = _ => "\n" });
            var length = command.Add(new Option<int>("--length") { Description = "Characters to generate", DefaultValueFactory = _ => 500 });
            var temperature = command.Add(new Option<double>("--temperature") { Description = "Below 1 sharper, above 1 more random; 0 always takes the most likely character", DefaultValueFactory = _ => 0.8 });
            var topK = command.Add(new Option<int>("--top-k") { Description = "Sample among the k most likely characters; 0 is all", DefaultValueFactory = _ => 0 });
            var seed = command.Add(new Option<long>("--seed") { Description = "Seed of the sampling (the same seed gives the same text)", DefaultValueFactory = _ => 0 });
            return command.Build((parsed, _) =>
            {
                int n = parsed.GetValue(length);
                if (n < 0) throw new TrainingException($"--length must be 0 or more, got {n}");
                double t = parsed.GetValue(temperature);
                if (!(t >= 0) || double.IsInfinity(t)) throw new TrainingException($"--temperature must be 0 or a positive number, got {t}");
                int k = parsed.GetValue(topK);
                if (k < 0) throw new TrainingException($"--top-k must be 0 (off) or a positive number, got {k}");
                string text = parsed.GetValue(prompt) ?? "\n";
                if (text.Length == 0) throw new TrainingException("--prompt needs at least one character");

                using var corpus = CharCorpus.Load(TrainingData.ResolvePath(parsed.GetValue(data) ?? plan.Data));
                long[] ids;
                try
                {
                    ids = corpus.Encode(text);
                }
                catch (ArgumentException e)
                {
                    throw new TrainingException($"--prompt: {e.Message.Split(" (Parameter")[0]}");
                }
                using var net = ModelLoader.Load(command.ModelPath(parsed, plan), create, plan.ModelName);

                var output = Console.Out;
                output.Write(text);
                foreach (long id in TextGeneration.Sample(net, ids, n, (int)plan.SampleShape[0], t, k, parsed.GetValue(seed)))
                {
                    output.Write(corpus.Vocabulary[(int)id]);
                    output.Flush();
                }
                output.WriteLine();
                return 0;
            });
        }
    }
}
