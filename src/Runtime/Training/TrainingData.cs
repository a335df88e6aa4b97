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

        internal static TensorDataset LoadFile(string path, TrainingPlan plan, LabelKind labelKind)
        {
            string resolved = ResolvePath(path);
            try
            {
                var data = CsvDataset.Load(resolved, plan.SampleShape, labelKind);
                CheckLabels(data, resolved, plan);
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
        private static void CheckLabels(TensorDataset data, string path, TrainingPlan plan)
        {
            if (!plan.IsClassification || plan.Classes < 1 || data.Count == 0) return;
            if (CsvDataset.FindLabelOutOfRange(data, plan.Classes, path, plan.ModelName) is { } e)
                throw new TrainingException(e.Message, TrainingHost.UsageError, e);
        }

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
