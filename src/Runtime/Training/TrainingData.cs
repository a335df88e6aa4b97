using System;
using System.IO;
using ModelDsl.Runtime.Data;
using static TorchSharp.torch;
using TensorDataset = ModelDsl.Runtime.Data.TensorDataset;

namespace ModelDsl.Runtime.Training
{
    /// <summary>The run's data: the training file split into training and validation sets, and the optional test set.</summary>
    internal sealed class TrainingData : IDisposable
    {
        private TrainingData(TensorDataset train, TensorDataset validation, TensorDataset? test)
        {
            Train = train;
            Validation = validation;
            Test = test;
        }

        public TensorDataset Train { get; }
        public TensorDataset Validation { get; }
        public TensorDataset? Test { get; }

        /// <summary>Loads and checks the plan's files; every problem is a <see cref="TrainingException"/> naming the file.</summary>
        public static TrainingData Load(TrainingPlan plan)
        {
            if (plan.IsLanguageModel) return LoadText(plan);
            var labelKind = plan.IsClassification ? LabelKind.ClassIndex : LabelKind.Float;
            using var all = LoadFile(plan.Data, plan, labelKind);
            TensorDataset train, validation;
            try
            {
                (train, validation) = all.Split(plan.ValidationFraction, plan.Seed);
            }
            catch (ArgumentOutOfRangeException e)
            {
                throw new TrainingException($"{plan.Data}: {e.Message}");
            }
            var test = plan.TestData.Length > 0 ? LoadFile(plan.TestData, plan, labelKind) : null;
            return new TrainingData(train, validation, test);
        }

        /// <summary>
        /// A language model's data: the text file as a character corpus, its first part in training windows and its
        /// last <see cref="TrainingPlan.ValidationFraction"/> in validation windows; a test file, if any, is encoded
        /// with the same vocabulary.
        /// </summary>
        private static TrainingData LoadText(TrainingPlan plan)
        {
            string resolved = ResolvePath(plan.Data);
            int window = (int)plan.SampleShape[0];
            try
            {
                using var corpus = CharCorpus.Load(resolved);
                if (plan.Classes > 0 && corpus.VocabularySize > plan.Classes)
                    throw new TrainingException($"{resolved}: the text has {corpus.VocabularySize} distinct characters, but {plan.ModelName} scores {plan.Classes} tokens; " +
                                                $"declare a vocabulary of at least {corpus.VocabularySize} (the embedding count and the output size)");
                var (train, validation) = corpus.SplitWindows(window, plan.ValidationFraction);
                TensorDataset? test = null;
                if (plan.TestData.Length > 0)
                {
                    string testPath = ResolvePath(plan.TestData);
                    if (!File.Exists(testPath)) throw new FileNotFoundException($"Text file not found: {testPath}", testPath);
                    using var ids = tensor(corpus.Encode(File.ReadAllText(testPath)));
                    test = WindowsOfIds(ids, window, testPath);
                }
                return new TrainingData(train, validation, test);
            }
            catch (Exception e) when (e is DataFormatException or FileNotFoundException or ArgumentException)
            {
                throw new TrainingException(e.Message.StartsWith(resolved, StringComparison.Ordinal) ? e.Message : $"{resolved}: {e.Message}", TrainingHost.UsageError, e);
            }
        }

        private static TensorDataset WindowsOfIds(Tensor ids, int window, string path)
        {
            long windows = (ids.shape[0] - 1) / window;
            if (windows < 1) throw new ArgumentException($"{path} has {ids.shape[0]} characters, too few for one window of {window}");
            using var scope = NewDisposeScope();
            return new TensorDataset(ids.narrow(0, 0, windows * window).reshape(windows, window).clone(),
                                     ids.narrow(0, 1, windows * window).reshape(windows, window).clone());
        }

        internal static TensorDataset LoadFile(string path, TrainingPlan plan, LabelKind labelKind)
        {
            string resolved = ResolvePath(path);
            try
            {
                var data = CsvDataset.Load(resolved, plan.SampleShape, labelKind, CsvOptionsOf(plan), out int headerRows);
                CheckLabels(data, resolved, plan, headerRows);
                if (plan.FeatureScale != 1.0 && !plan.InputIsInteger) data.Features.mul_(plan.FeatureScale);
                if (!plan.InputIsInteger) return data;

                // Token-id models take int64 features; the CSV reader yields float32.
                using (data)
                    return new TensorDataset(data.Features.to_type(ScalarType.Int64), data.Labels.clone());
            }
            catch (Exception e) when (e is DataFormatException or FileNotFoundException)
            {
                throw new TrainingException(e.Message, TrainingHost.UsageError, e);
            }
        }

        /// <summary>Class labels must index the model's output classes; libtorch would fail deep inside the loss.</summary>
        private static void CheckLabels(TensorDataset data, string path, TrainingPlan plan, int headerRows)
        {
            if (!plan.IsClassification || plan.Classes < 1 || data.Count == 0) return;
            if (CsvDataset.FindLabelOutOfRange(data, plan.Classes, path, plan.ModelName, headerRows) is { } e)
                throw new TrainingException(e.Message, TrainingHost.UsageError, e);
        }

        /// <summary>The plan's CSV layout: its header row and label column.</summary>
        internal static CsvOptions CsvOptionsOf(TrainingPlan plan) =>
            new() { Header = plan.Header, LabelColumn = plan.LabelColumn.Length > 0 ? plan.LabelColumn : null };

        /// <summary>A relative data path is looked up in the working directory, then beside the program.</summary>
        internal static string ResolvePath(string path)
        {
            if (Path.IsPathRooted(path) || File.Exists(path)) return Path.GetFullPath(path);
            var besideProgram = Path.Combine(AppContext.BaseDirectory, path);
            return File.Exists(besideProgram) ? besideProgram : Path.GetFullPath(path);
        }

        public void Dispose()
        {
            Train.Dispose();
            Validation.Dispose();
            Test?.Dispose();
        }
    }
}
