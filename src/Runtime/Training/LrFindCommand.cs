using System;
using System.CommandLine;
using System.Globalization;
using System.IO;
using System.Text;
using ModelDsl.Runtime.Inference;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// <c>lr-find</c>: the learning-rate range test (<see cref="LearningRateFinder"/>) on a fresh copy of the model
    /// with the declared optimiser and loss. Prints the suggested rate and writes the loss-vs-lr plot (PNG) and its
    /// values (CSV); checkpoints are neither read nor written.
    /// </summary>
    internal static class LrFindCommand
    {
        public const string Name = "lr-find";

        public static Command Create<TModel>(TrainingPlan plan, Func<TModel> create) where TModel : nn.Module<Tensor, Tensor>
        {
            var command = new ModelCommandBuilder(plan, Name, $"Learning-rate range test for {plan.ModelName}: train a fresh copy with {plan.Optimizer} at exponentially growing rates, " +
                                                             "plot the loss and suggest a rate (Smith 2017; Lightning's lr_find). Checkpoints are left alone.");
            var start = command.Add(new Option<double>("--start-lr") { Description = "The first (smallest) learning rate", DefaultValueFactory = _ => 1e-7 });
            var end = command.Add(new Option<double>("--end-lr") { Description = "The last (largest) learning rate", DefaultValueFactory = _ => 10 });
            var steps = command.Add(new Option<int>("--steps") { Description = "Mini-batches in the sweep, one learning rate each, growing exponentially", DefaultValueFactory = _ => 100 });
            var data = command.Add(new Option<string>("--data") { Description = "Training data file" + (plan.Data.Length > 0 ? $" (declared: {plan.Data})" : ""), DefaultValueFactory = _ => plan.Data });
            command.WithBatchSize($"Samples per batch (declared: {plan.BatchSize})", () => plan.BatchSize);
            var seed = command.Add(new Option<long>("--seed") { Description = $"Seed for initialisation and shuffling (declared: {plan.Seed})", DefaultValueFactory = _ => plan.Seed });
            var output = command.Add(new Option<string>("--output")
            {
                Description = "The loss-vs-lr plot (PNG); its values go to the same name with .csv",
                DefaultValueFactory = _ => $"{plan.ModelName}.lr-find.png",
                HelpName = "PNG",
            });
            var device = command.Add(new Option<string>("--device") { Description = "cpu or cuda", DefaultValueFactory = _ => "cpu" });
            device.AcceptOnlyFromAmong("cpu", "cuda");
            return command.WithCsvLayout().Build((parsed, layoutPlan) =>
            {
                double startLr = parsed.GetValue(start), endLr = parsed.GetValue(end);
                int n = parsed.GetValue(steps);
                if (!ModelDsl.Plans.PlanRules.LearningRate.Holds(startLr)) throw new TrainingException($"--start-lr must be a positive number, got {Num(startLr)}");
                if (!(endLr > startLr) || double.IsInfinity(endLr)) throw new TrainingException($"--end-lr must be a number above --start-lr ({Num(startLr)}), got {Num(endLr)}");
                if (n < 2) throw new TrainingException($"--steps must be at least 2, got {n}");
                int b = command.BatchSize(parsed);
                string dataPath = parsed.GetValue(data) ?? "";
                if (dataPath.Length == 0) throw new TrainingException($"no training data: {plan.ModelName}'s [Train] declares no Data; pass --data FILE");
                string png = parsed.GetValue(output) ?? "";
                if (png.Length == 0) throw new TrainingException("--output needs a file name");
                var runPlan = layoutPlan with { Data = dataPath, BatchSize = b, Seed = parsed.GetValue(seed) };
                Console.WriteLine($"lr-find {plan.ModelName}: {n} steps from {Num(startLr)} to {Num(endLr)} ({runPlan.Optimizer}, {runPlan.LossName} loss, batch {b})");

                var sweep = Sweep(runPlan, create, startLr, endLr, n, parsed.GetValue(device) ?? "cpu");
                string csv = Path.ChangeExtension(png, ".csv");
                WriteCsv(csv, sweep);
                try
                {
                    TrainingCurves.SaveLearningRateSweep(png, sweep);
                }
                catch (InvalidOperationException e)
                {
                    throw new TrainingException(e.Message, TrainingHost.UsageError, e);
                }
                foreach (var line in Describe(sweep, n)) Console.WriteLine(line);
                Console.WriteLine($"plot: {png}");
                Console.WriteLine($"values: {csv}");
                return 0;
            });
        }

        /// <summary>Loads the training split of the plan's data and sweeps a freshly created model over it.</summary>
        public static LearningRateSweep Sweep<TModel>(TrainingPlan plan, Func<TModel> create, double startLr, double endLr, int steps, string device = "cpu")
            where TModel : nn.Module<Tensor, Tensor>
        {
            var target = Trainer.ResolveDevice(device);
            using var data = TrainingData.Load(plan);
            // The seed fixes the initial weights as it does for training.
            torch.manual_seed(plan.Seed);
            using var model = create();
            model.to(target);
            return LearningRateFinder.Run(model, data.Train, plan, startLr, endLr, steps, target);
        }

        /// <summary>The lines printed after the sweep: how far it went and the suggestion.</summary>
        internal static string[] Describe(LearningRateSweep sweep, int steps)
        {
            var last = sweep.Points[^1];
            string ran = sweep.DivergedAt is { } d
                ? $"stopped after step {d + 1} of {steps} at lr {Num(sweep.Points[d].LearningRate)}: " +
                  (double.IsFinite(sweep.Points[d].Loss)
                      ? $"the smoothed loss {Fixed(sweep.Points[d].Smoothed)} passed {Num(LearningRateFinder.DivergenceFactor)} x the best {Fixed(sweep.BestSmoothed)} (diverged)"
                      : $"the loss became {sweep.Points[d].Loss}")
                : $"ran {sweep.Points.Count} steps up to lr {Num(last.LearningRate)}; best smoothed loss {Fixed(sweep.BestSmoothed)}";
            string suggestion = sweep.SuggestionIndex is { } i
                ? $"suggested learning rate: {Num(sweep.Points[i].LearningRate)} (steepest descent of the smoothed loss, step {i + 1})"
                : $"no suggestion: {sweep.Points.Count} points are too few once the first {LearningRateFinder.SkipBegin} and the last {LearningRateFinder.SkipEnd} are left out; " +
                  "lower --start-lr or raise --steps";
            return new[] { ran, suggestion };
        }

        private static void WriteCsv(string path, LearningRateSweep sweep)
        {
            var sb = new StringBuilder("step,lr,loss,smoothed\n");
            foreach (var p in sweep.Points)
                sb.Append(p.Step.ToString(CultureInfo.InvariantCulture)).Append(',').Append(R(p.LearningRate)).Append(',')
                  .Append(R(p.Loss)).Append(',').Append(R(p.Smoothed)).Append('\n');
            ModelFiles.AtomicWrite(path, s => s.Write(Encoding.UTF8.GetBytes(sb.ToString())));
        }

        private static string R(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        private static string Num(double v) => v.ToString("G4", CultureInfo.InvariantCulture);
        private static string Fixed(double v) => v.ToString("0.0000", CultureInfo.InvariantCulture);
    }
}
