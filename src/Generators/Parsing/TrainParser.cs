using ModelDsl.Plans;
using static ModelDsl.Generators.Parsing.PlanArguments;

namespace ModelDsl.Generators.Parsing
{
    /// <summary>Reads and checks a [Train] attribute against the model it trains.</summary>
    internal static class TrainParser
    {
        internal const string TrainAttributeName = "ModelDsl." + nameof(TrainAttribute);
        internal const string TrainingHostName = "ModelDsl.Runtime.Training.TrainingHost";

        /// <summary>
        /// Checks the plan. <paramref name="output"/> is null when the model's output is unknown at compile time
        /// (its own forward), in which case the loss is not checked against it; <paramref name="outputIsInteger"/> says
        /// whether it holds integer ids.
        /// </summary>
        public static TrainSpec? Parse(string modelName, AttributeData attribute, Compilation compilation, Dim[]? input, bool inputIsInteger,
            Dim[]? output, bool outputIsInteger, string? lastLayerKind, Action<DiagnosticDescriptor, Location?, string[]> report,
            long maxPositions = long.MaxValue, IReadOnlyList<LayerKind>? layerKinds = null)
        {
            var args = new PlanArguments(attribute, report);
            var reader = args.Reader;
            var attributeLocation = reader.ArgumentLocation(null);
            if (attribute.AttributeConstructor is null) return null; // the compiler reports the bad arguments

            if (compilation.GetTypeByMetadataName(TrainingHostName) is null)
            {
                report(DiagnosticDescriptors.RuntimeMissing, attributeLocation, new[] { modelName });
                return null;
            }

            bool ok = true; // problems reported outside args.Fail

            string? loss = args.Enum("loss", nameof(Loss.CrossEntropy), DiagnosticDescriptors.InvalidTrainingSetting);
            string? optimizer = args.Enum("optimizer", nameof(Optimizer.SGD), DiagnosticDescriptors.InvalidTrainingSetting);
            string? schedule = args.Enum(nameof(TrainAttribute.Schedule), nameof(Schedule.Constant), DiagnosticDescriptors.InvalidTrainingSetting);

            double lr = args.Get(nameof(TrainAttribute.LearningRate), PlanDefaults.LearningRate);
            if (!PlanRules.LearningRate.Holds(lr)) args.Fail(DiagnosticDescriptors.InvalidLearningRate, nameof(TrainAttribute.LearningRate), Num(lr));
            int epochs = args.Get(nameof(TrainAttribute.Epochs), PlanDefaults.Epochs);
            if (!PlanRules.Epochs.Holds(epochs)) args.Fail(DiagnosticDescriptors.InvalidEpochs, nameof(TrainAttribute.Epochs), epochs.ToString(CultureInfo.InvariantCulture));
            int batch = args.Get(nameof(TrainAttribute.BatchSize), PlanDefaults.BatchSize);
            if (!PlanRules.BatchSize.Holds(batch)) args.Fail(DiagnosticDescriptors.InvalidBatchSize, nameof(TrainAttribute.BatchSize), batch.ToString(CultureInfo.InvariantCulture));

            double weightDecay = args.Get(nameof(TrainAttribute.WeightDecay), PlanDefaults.WeightDecay);
            double momentum = args.Get(nameof(TrainAttribute.Momentum), 0.0);
            bool nesterov = args.Get(nameof(TrainAttribute.Nesterov), false);
            if (!double.IsNaN(weightDecay) && !PlanRules.WeightDecay.Holds(weightDecay))
                args.Fail(DiagnosticDescriptors.InvalidOptimizerSetting, nameof(TrainAttribute.WeightDecay), $"WeightDecay is {Num(weightDecay)}; it must be 0 or more");
            if (!PlanRules.Momentum.Holds(momentum))
                args.Fail(DiagnosticDescriptors.InvalidOptimizerSetting, nameof(TrainAttribute.Momentum), $"Momentum is {Num(momentum)}; it must be in [0, 1)");
            else if (momentum > 0 && optimizer is not null and not "SGD")
                args.Fail(DiagnosticDescriptors.InvalidOptimizerSetting, nameof(TrainAttribute.Momentum), $"Momentum applies to SGD; {optimizer} keeps its own moment estimates (betas)");
            if (nesterov && optimizer is not null and not "SGD")
                args.Fail(DiagnosticDescriptors.InvalidOptimizerSetting, nameof(TrainAttribute.Nesterov), $"Nesterov applies to SGD, not {optimizer}");
            else if (nesterov && !(momentum > 0))
                args.Fail(DiagnosticDescriptors.InvalidOptimizerSetting, nameof(TrainAttribute.Nesterov), "Nesterov momentum requires a momentum > 0 (as in PyTorch)");

            double warmup = args.Get(nameof(TrainAttribute.WarmupEpochs), 0.0);
            int stepSize = args.Get(nameof(TrainAttribute.StepSize), PlanDefaults.StepSize);
            double gamma = args.Get(nameof(TrainAttribute.Gamma), PlanDefaults.Gamma);
            if (!(warmup >= 0) || double.IsInfinity(warmup) || (epochs >= 1 && warmup >= epochs && warmup > 0))
                args.Fail(DiagnosticDescriptors.InvalidSchedule, nameof(TrainAttribute.WarmupEpochs), $"WarmupEpochs is {Num(warmup)}; it must be 0 or more and less than Epochs ({epochs})");
            else if (warmup > 0 && schedule is not null and not "Cosine")
                args.Fail(DiagnosticDescriptors.InvalidSchedule, nameof(TrainAttribute.WarmupEpochs), $"WarmupEpochs applies to Schedule.Cosine, not Schedule.{schedule}");
            else if (warmup != Math.Floor(warmup) && args.Get(nameof(TrainAttribute.ScheduleInterval), (int)ScheduleInterval.Epoch) != (int)ScheduleInterval.Step)
                args.Fail(DiagnosticDescriptors.InvalidSchedule, nameof(TrainAttribute.WarmupEpochs), $"WarmupEpochs = {Num(warmup)} is a fraction of an epoch; that needs ScheduleInterval = ScheduleInterval.Step (the rate changes every step)");
            if (!PlanRules.StepSize.Holds(stepSize))
                args.Fail(DiagnosticDescriptors.InvalidSchedule, nameof(TrainAttribute.StepSize), $"StepSize is {stepSize}; it must be at least 1 epoch");
            if (!PlanRules.Gamma.Holds(gamma))
                args.Fail(DiagnosticDescriptors.InvalidSchedule, nameof(TrainAttribute.Gamma), $"Gamma is {Num(gamma)}; it must be in (0, 1]");

            double clip = args.Get(nameof(TrainAttribute.GradientClipNorm), 0.0);
            if (!PlanRules.GradientClipNorm.Holds(clip))
                args.Fail(DiagnosticDescriptors.InvalidTrainingSetting, nameof(TrainAttribute.GradientClipNorm), $"GradientClipNorm is {Num(clip)}; use a positive norm, or 0 for no clipping");
            double validation = args.Get(nameof(TrainAttribute.ValidationFraction), PlanDefaults.ValidationFraction);
            if (!PlanRules.ValidationFraction.Holds(validation))
                args.Fail(DiagnosticDescriptors.InvalidTrainingSetting, nameof(TrainAttribute.ValidationFraction), $"ValidationFraction is {Num(validation)}; it must be in [0, 1)");

            int patience = args.Get(nameof(TrainAttribute.EarlyStoppingPatience), 0);
            if (!PlanRules.EarlyStoppingPatience.Holds(patience))
                args.Fail(DiagnosticDescriptors.InvalidTrainingSetting, nameof(TrainAttribute.EarlyStoppingPatience), $"EarlyStoppingPatience is {patience}; use a number of epochs, or 0 for no early stopping");
            else if (patience > 0 && validation == 0)
                args.Fail(DiagnosticDescriptors.InvalidTrainingSetting, nameof(TrainAttribute.EarlyStoppingPatience), "EarlyStoppingPatience watches the validation loss, but ValidationFraction is 0; hold out some data for validation");

            double featureScale = args.Get(nameof(TrainAttribute.FeatureScale), PlanDefaults.FeatureScale);
            if (!PlanRules.FeatureScale.Holds(featureScale))
                args.Fail(DiagnosticDescriptors.InvalidTrainingSetting, nameof(TrainAttribute.FeatureScale), $"FeatureScale is {Num(featureScale)}; it must be a positive number");

            int accumulation = args.Get(nameof(TrainAttribute.GradientAccumulation), PlanDefaults.GradientAccumulation);
            if (!PlanRules.GradientAccumulation.Holds(accumulation))
                args.Fail(DiagnosticDescriptors.InvalidGradientAccumulation, nameof(TrainAttribute.GradientAccumulation), Int(accumulation));

            double memoryBudget = args.Get(nameof(TrainAttribute.MemoryBudgetMB), 0.0);
            if (!PlanRules.MemoryBudgetMB.Holds(memoryBudget))
                args.Fail(DiagnosticDescriptors.InvalidTrainingSetting, nameof(TrainAttribute.MemoryBudgetMB), $"MemoryBudgetMB is {Num(memoryBudget)}; it must be {PlanRules.MemoryBudgetMB.Requirement}");

            string? interval = args.Enum(nameof(TrainAttribute.ScheduleInterval), nameof(ScheduleInterval.Epoch), DiagnosticDescriptors.InvalidTrainingSetting);

            // Mixed precision runs the matrix products in bfloat16 (LayerKind.Autocast); a model with none would train in
            // float32 all the same. A composed model's layers are its own: it may hold some.
            string? precision = args.Enum(nameof(TrainAttribute.Precision), nameof(Precision.Float32), DiagnosticDescriptors.InvalidTrainingSetting);
            if (precision == nameof(Precision.BFloat16) && layerKinds is { Count: > 0 }
                && !layerKinds.Any(k => k.Autocast == AutocastPolicy.BFloat16 || k == LayerKind.Model))
                report(DiagnosticDescriptors.PrecisionWithoutMatrixProducts, reader.ArgumentLocation(nameof(TrainAttribute.Precision)), new[] { modelName });

            // Recompute.Blocks recomputes TransformerBlock layers and composed [Block]s; a model with neither has nothing to recompute.
            string? recompute = args.Enum(nameof(TrainAttribute.Recompute), nameof(Recompute.None), DiagnosticDescriptors.InvalidTrainingSetting);
            if (recompute == nameof(Recompute.Blocks) && layerKinds is { Count: > 0 }
                && !layerKinds.Any(k => k.IsRecomputedBlock))
                report(DiagnosticDescriptors.RecomputeWithoutBlock, reader.ArgumentLocation(nameof(TrainAttribute.Recompute)), new[] { modelName });

            // A language model: token ids (B, T) in, next-token scores (B, T, V) out. It trains on a text file with a
            // target per position, in windows of T characters (SequenceLength binds a symbolic T).
            bool language = inputIsInteger && input is { Length: 2 } && output is { Length: 3 } && output[0].Equals(input[0]) && output[1].Equals(input[1]);
            int sequenceLength = args.Get(nameof(TrainAttribute.SequenceLength), 0);
            if (sequenceLength < 0)
                args.Fail(DiagnosticDescriptors.InvalidTrainingSetting, nameof(TrainAttribute.SequenceLength), $"SequenceLength is {sequenceLength}; it must be a positive window length, or 0 to take T from the input");
            else if (sequenceLength > 0 && !language && output is not null)
                args.Fail(DiagnosticDescriptors.InvalidTrainingSetting, nameof(TrainAttribute.SequenceLength),
                    $"SequenceLength applies to a language model, token ids (B, T) in and scores (B, T, V) out; model '{modelName}' maps {(input is null ? "?" : ShapeText.Format(input))} to {ShapeText.Format(output)}");
            else if (sequenceLength > 0 && language && input![1].IsConcrete && input[1].Size != sequenceLength)
                args.Fail(DiagnosticDescriptors.InvalidTrainingSetting, nameof(TrainAttribute.SequenceLength), $"SequenceLength = {sequenceLength} disagrees with the input's T = {input[1].Size}; drop it, or make T symbolic");
            else if (sequenceLength > maxPositions)
                args.Fail(DiagnosticDescriptors.SequenceTooLong, nameof(TrainAttribute.SequenceLength), modelName, $"SequenceLength = {sequenceLength} is longer than the positional table (maxLength = {maxPositions})");

            // The CSV layout: a header row (declared, else detected at run time) and a label column named in it.
            bool? header = args.Has(nameof(TrainAttribute.Header)) ? args.Get(nameof(TrainAttribute.Header), false) : null;
            string labelColumn = args.Get(nameof(TrainAttribute.LabelColumn), "") ?? "";
            if (language && output is not null)
            {
                foreach (var setting in new[] { nameof(TrainAttribute.Header), nameof(TrainAttribute.LabelColumn) })
                    if (args.Has(setting)) args.Fail(DiagnosticDescriptors.CsvSettingOnTextData, setting, setting, modelName);
            }
            else if (args.Has(nameof(TrainAttribute.LabelColumn)) && LabelColumnProblem(labelColumn) is { } labelProblem)
                args.Fail(DiagnosticDescriptors.InvalidLabelColumn, nameof(TrainAttribute.LabelColumn), labelProblem);
            else if (labelColumn.Length > 0 && header == false)
                args.Fail(DiagnosticDescriptors.LabelColumnNeedsHeader, nameof(TrainAttribute.Header), labelColumn);

            var sample = new List<long>();
            if (input is not null && language && sequenceLength > 0 && !input[1].IsConcrete)
            {
                sample.Add(sequenceLength);
            }
            else if (input is not null)
            {
                foreach (var d in input.Skip(1))
                {
                    if (!d.IsConcrete)
                    {
                        report(DiagnosticDescriptors.TrainNeedsConcreteInput, attributeLocation, new[] { modelName, ShapeText.Format(input),
                            language ? $"; a language model binds '{d.Symbol}' to its training window with [Train(SequenceLength = ...)]" : "" });
                        ok = false;
                        break;
                    }
                    sample.Add(d.Size);
                }
            }
            else ok = false;

            if (loss is not null && output is not null && input is { Length: > 0 })
            {
                string? problem = language ? LossRules.PerPositionProblem(loss, output) : LossRules.Problem(loss, output, input[0], outputIsInteger);
                if (problem is not null)
                    args.Fail(DiagnosticDescriptors.LossDoesNotFitOutput, "loss", loss, ShapeText.Format(output), modelName, problem);
                string? mismatch = ActivationMismatch(loss, lastLayerKind);
                if (mismatch is not null)
                    report(DiagnosticDescriptors.LossActivationMismatch, reader.ArgumentLocation("loss"), new[] { loss, lastLayerKind!, mismatch });
            }

            if (!ok || !args.Ok || loss is null || optimizer is null || schedule is null || interval is null) return null;
            // The classes are dimension 1 of (B, C), or the vocabulary V of a language model's (B, T, V).
            int classDim = language ? 2 : 1;
            int classes = loss is "CrossEntropy" or "NLL" && output is { } o && o.Length > classDim && o[classDim].IsConcrete && o[classDim].Size <= int.MaxValue ? (int)o[classDim].Size : 0;
            // The generated TrainingPlan's values, in the order it lists them: what the model declares (the runtime
            // owns the defaults of what it leaves out) and the facts the compiler found.
            var values = new List<PlanValue>
            {
                new("InputIsInteger", inputIsInteger),
                new(nameof(TrainAttribute.Loss), loss, nameof(Loss)),
                new(nameof(TrainAttribute.Optimizer), optimizer, nameof(Optimizer)),
            };
            args.AddIfWritten(values, nameof(TrainAttribute.LearningRate), lr);
            args.AddIfWritten(values, nameof(TrainAttribute.WeightDecay), weightDecay);
            args.AddIfWritten(values, nameof(TrainAttribute.Momentum), momentum);
            args.AddIfWritten(values, nameof(TrainAttribute.Nesterov), nesterov);
            args.AddIfWritten(values, nameof(TrainAttribute.Epochs), epochs);
            args.AddIfWritten(values, nameof(TrainAttribute.BatchSize), batch);
            args.AddIfWritten(values, nameof(TrainAttribute.Seed), args.Get(nameof(TrainAttribute.Seed), 0L));
            args.AddIfWritten(values, nameof(TrainAttribute.Schedule), schedule, nameof(Schedule));
            args.AddIfWritten(values, nameof(TrainAttribute.WarmupEpochs), warmup == Math.Floor(warmup) && Math.Abs(warmup) < int.MaxValue ? (object)(int)warmup : warmup);
            args.AddIfWritten(values, nameof(TrainAttribute.StepSize), stepSize);
            args.AddIfWritten(values, nameof(TrainAttribute.Gamma), gamma);
            args.AddIfWritten(values, nameof(TrainAttribute.GradientClipNorm), clip);
            args.AddIfWritten(values, nameof(TrainAttribute.Data), args.Get(nameof(TrainAttribute.Data), "") ?? "");
            args.AddIfWritten(values, nameof(TrainAttribute.TestData), args.Get(nameof(TrainAttribute.TestData), "") ?? "");
            args.AddIfWritten(values, nameof(TrainAttribute.ValidationFraction), validation);
            args.AddIfWritten(values, nameof(TrainAttribute.FeatureScale), featureScale);
            args.AddIfWritten(values, nameof(TrainAttribute.Header), header);
            args.AddIfWritten(values, nameof(TrainAttribute.LabelColumn), labelColumn);
            if (classes > 0) values.Add(new("Classes", classes));
            args.AddIfWritten(values, nameof(TrainAttribute.EarlyStoppingPatience), patience);
            args.AddIfWritten(values, nameof(TrainAttribute.ScheduleInterval), interval, nameof(ScheduleInterval));
            args.AddIfWritten(values, nameof(TrainAttribute.GradientAccumulation), accumulation);
            args.AddIfWritten(values, nameof(TrainAttribute.MemoryBudgetMB), memoryBudget);
            args.AddIfWritten(values, nameof(TrainAttribute.Precision), precision, nameof(Precision));
            args.AddIfWritten(values, nameof(TrainAttribute.Recompute), recompute, nameof(Recompute));
            if (language)
                values.Add(new("IsLanguageModel", true,
                    Before: $"Token ids (B, T) -> scores (B, T, V): trained on a text file in windows of {Int(sample[0])} characters, a target per position."));
            return new TrainSpec(loss, optimizer, epochs, batch, sample.ToEquatableArray(), language, values.ToEquatableArray())
            {
                Momentum = momentum, MemoryBudgetMB = memoryBudget,
            };
        }

        /// <summary>Why a label column name can never match a name of a CSV header row, or null when it can.</summary>
        private static string? LabelColumnProblem(string name)
        {
            if (name.Trim().Length == 0)
                return "LabelColumn is empty; name a column of the header row, or leave LabelColumn out for the last column";
            int bad = name.IndexOfAny(new[] { ',', '"', '\r', '\n' });
            if (bad >= 0)
                return $"LabelColumn \"{name}\" contains {(name[bad] is ',' or '"' ? $"'{name[bad]}'" : "a line break")}, which no name in a CSV header row can hold";
            if (name.Trim().Length != name.Length)
                return $"LabelColumn \"{name}\" has spaces around it; the names of the header row are read without them";
            return null;
        }

        private static string? ActivationMismatch(string loss, string? last) => (loss, last) switch
        {
            ("CrossEntropy", "Softmax") => "CrossEntropy applies log-softmax itself, so the model's softmax is applied twice; drop the [Softmax] layer",
            ("CrossEntropy", "LogSoftmax") => "CrossEntropy applies log-softmax itself; with a final [LogSoftmax] use Loss.NLL",
            ("NLL", "Softmax") => "NLL expects log-probabilities; use [LogSoftmax] instead of [Softmax]",
            ("NLL", "Linear") => "NLL expects log-probabilities, not raw scores; add [LogSoftmax(1)] or use Loss.CrossEntropy",
            ("BCEWithLogits", "Sigmoid") => "BCEWithLogits applies the sigmoid itself, so it is applied twice; drop the [Sigmoid] layer",
            _ => null,
        };
    }
}
