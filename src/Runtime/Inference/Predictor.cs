using System.Globalization;
using ModelDsl.Runtime.Training;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>
    /// Batched inference under no-grad, in eval mode, with the input checked against the model's declared shape
    /// first (a clear <see cref="ArgumentException"/>, not a libtorch error from a layer deep inside). Generated
    /// models call it from <c>Predict</c> and <c>PredictProba</c>.
    /// </summary>
    public static class Predictor
    {
        /// <summary>Samples per forward pass when the caller does not say: large enough to be fast, small enough to bound memory.</summary>
        public const int DefaultBatchSize = 1024;

        /// <summary>
        /// The model's raw output for <paramref name="input"/>, computed in batches of <paramref name="batchSize"/>
        /// in eval mode (the previous mode is restored) without gradients, on the input's device.
        /// </summary>
        public static Tensor Forward(nn.Module<Tensor, Tensor> model, Tensor input, ModelSignature signature, int batchSize = DefaultBatchSize) =>
            Run(model, input, signature, batchSize, output => output);

        /// <summary>
        /// Predictions for <paramref name="input"/>: for a classifier the class of each sample (int64, shape
        /// <c>(B)</c>; for a binary model 1 where P(class 1) &gt; 0.5), otherwise the output itself.
        /// </summary>
        public static Tensor Predict(nn.Module<Tensor, Tensor> model, Tensor input, ModelSignature signature, int batchSize = DefaultBatchSize) =>
            Run(model, input, signature, batchSize, output => Classes(output, signature.Output));

        /// <summary>
        /// Class probabilities for <paramref name="input"/>, shape <c>(B, C)</c> (<c>(B, 2)</c> for a binary model);
        /// each row sums to 1. Only for classifiers: a model whose output is plain values throws <see cref="InvalidOperationException"/>.
        /// </summary>
        public static Tensor PredictProba(nn.Module<Tensor, Tensor> model, Tensor input, ModelSignature signature, int batchSize = DefaultBatchSize)
        {
            ArgumentNullException.ThrowIfNull(signature);
            if (!signature.IsClassifier)
                throw new InvalidOperationException($"{signature.ModelName} is not a classifier (its output is plain values), so it has no class probabilities; use Predict");
            return Run(model, input, signature, batchSize, output => Probabilities(output, signature.Output));
        }

        /// <summary>Probabilities from a batch of raw outputs of a model whose output means <paramref name="kind"/>.</summary>
        public static Tensor Probabilities(Tensor output, ModelOutput kind) => kind switch
        {
            ModelOutput.ClassLogits => output.softmax(1),
            ModelOutput.ClassLogProbabilities => output.exp(),
            ModelOutput.BinaryLogit => BinaryProbabilities(output),
            _ => throw new InvalidOperationException("plain values have no class probabilities"),
        };

        /// <summary>Classes (int64, shape (B)) from a batch of raw outputs; plain values are returned as they are.</summary>
        public static Tensor Classes(Tensor output, ModelOutput kind) => kind switch
        {
            ModelOutput.ClassLogits or ModelOutput.ClassLogProbabilities => output.argmax(1),
            ModelOutput.BinaryLogit => BinaryClasses(output),
            _ => output,
        };

        /// <summary>
        /// Throws <see cref="ArgumentException"/> unless <paramref name="input"/> fits the declared input: the rank
        /// (batch dim included), every concrete size, one size per symbol, and the dtype kind.
        /// </summary>
        public static void CheckInput(Tensor input, ModelSignature signature)
        {
            ArgumentNullException.ThrowIfNull(input);
            ArgumentNullException.ThrowIfNull(signature);
            long[] shape = input.shape;
            string got = "[" + string.Join(", ", shape.Select(d => d.ToString(CultureInfo.InvariantCulture))) + "]";
            string expects = $"{signature.ModelName} expects input {signature.Input}";
            if (shape.Length != signature.Rank)
            {
                string hint = shape.Length == signature.Rank - 1 && FitsWithoutBatch(shape, signature)
                    ? "; this looks like one sample without the batch dimension: pass x.unsqueeze(0)"
                    : "";
                throw new ArgumentException($"{expects} ({signature.Rank} dims, the first the batch), got a tensor of shape {got}{hint}", nameof(input));
            }
            var bound = new Dictionary<string, (int Dim, long Size)>(StringComparer.Ordinal);
            for (int i = 0; i < shape.Length; i++)
            {
                var (size, symbol) = signature.Dim(i);
                if (symbol is null)
                {
                    if (shape[i] != size)
                        throw new ArgumentException($"{expects}, got a tensor of shape {got}: dimension {i} is {shape[i]}, the model declares {size}", nameof(input));
                }
                else if (bound.TryGetValue(symbol, out var first) && first.Size != shape[i])
                {
                    throw new ArgumentException($"{expects}, got a tensor of shape {got}: dimension {i} ({symbol}) is {shape[i]}, but dimension {first.Dim} ({symbol}) is {first.Size}", nameof(input));
                }
                else bound[symbol] = (i, shape[i]);
            }
            bool integral = input.dtype is ScalarType.Int64 or ScalarType.Int32 or ScalarType.Int16 or ScalarType.Int8 or ScalarType.Byte;
            if (signature.InputIsInteger && !integral)
                throw new ArgumentException($"{signature.ModelName} takes integer ids (int64), got a {input.dtype} tensor", nameof(input));
            if (!signature.InputIsInteger && !torch.is_floating_point(input))
                throw new ArgumentException($"{signature.ModelName} takes float32 values, got a {input.dtype} tensor; convert it with x.to_type(ScalarType.Float32)", nameof(input));
        }

        /// <summary>
        /// Throws <see cref="ArgumentException"/> unless each of several inputs fits its declared shape
        /// (<see cref="CheckInput"/>) and they share one batch size: what <c>Predict(image, meta)</c> checks before it
        /// packs them into one row per sample.
        /// </summary>
        public static void CheckInputs(IReadOnlyList<Tensor> inputs, IReadOnlyList<ModelSignature> signatures)
        {
            ArgumentNullException.ThrowIfNull(inputs);
            ArgumentNullException.ThrowIfNull(signatures);
            if (inputs.Count != signatures.Count)
                throw new ArgumentException($"expected {signatures.Count} inputs, got {inputs.Count}", nameof(inputs));
            for (int i = 0; i < inputs.Count; i++)
            {
                CheckInput(inputs[i], signatures[i]);
                if (inputs[i].shape[0] != inputs[0].shape[0])
                    throw new ArgumentException($"{signatures[i].ModelName} has {inputs[i].shape[0]} samples, but {signatures[0].ModelName} has {inputs[0].shape[0]}; every input holds the same samples", nameof(inputs));
            }
        }

        private static bool FitsWithoutBatch(long[] shape, ModelSignature signature)
        {
            for (int i = 0; i < shape.Length; i++)
            {
                var (size, symbol) = signature.Dim(i + 1);
                if (symbol is null && shape[i] != size) return false;
            }
            return true;
        }

        // The temporaries are held in using variables (disposed after the last native call reads them), so these
        // public helpers are safe outside a dispose scope too: see README.md, "Tensor temporaries".
        private static Tensor BinaryProbabilities(Tensor output)
        {
            using var logits = output.reshape(output.shape[0]);
            using var p1 = logits.sigmoid();
            using var p0 = 1 - p1;
            return torch.stack(new[] { p0, p1 }, 1);
        }

        private static Tensor BinaryClasses(Tensor output)
        {
            using var logits = output.reshape(output.shape[0]);
            using var positive = logits.gt(0);
            return positive.to_type(ScalarType.Int64);
        }

        private static Tensor Run(nn.Module<Tensor, Tensor> model, Tensor input, ModelSignature signature, int batchSize, Func<Tensor, Tensor> post)
        {
            ArgumentNullException.ThrowIfNull(model);
            ArgumentNullException.ThrowIfNull(signature);
            if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "batchSize must be at least 1");
            CheckInput(input, signature);

            var device = model.parameters().FirstOrDefault()?.device ?? input.device;
            bool wasTraining = model.training;
            model.eval();
            try
            {
                using var noGrad = torch.no_grad();
                using var scope = torch.NewDisposeScope();
                // Converted only when needed: a no-op conversion could hand back the caller's own tensor to this scope.
                var x = input;
                var dtype = signature.InputIsInteger ? ScalarType.Int64 : ScalarType.Float32;
                if (x.dtype != dtype) x = x.to_type(dtype);
                if (x.device_type != device.type || x.device_index != device.index) x = x.to(device);
                long n = x.shape[0];
                var parts = new List<Tensor>();
                for (long start = 0; start < n || (n == 0 && start == 0); start += batchSize)
                {
                    var chunk = x.narrow(0, start, Math.Min(batchSize, n - start));
                    parts.Add(post(Call(model, chunk, signature)));
                    if (n == 0) break;
                }
                var result = parts.Count == 1 ? parts[0] : torch.cat(parts, 0);
                if (result.device_type != input.device_type || result.device_index != input.device_index) result = result.to(input.device);
                return result.MoveToOuterDisposeScope();
            }
            finally
            {
                model.train(wasTraining);
            }
        }

        private static Tensor Call(nn.Module<Tensor, Tensor> model, Tensor x, ModelSignature signature)
        {
            try
            {
                return model.call(x);
            }
            catch (Exception e) when (StepFailure.IsNative(e))
            {
                // The input fitted the declared shape, so a failure is the model's (a replaced layer, a hand-written forward).
                throw new InvalidOperationException($"{signature.ModelName} failed on an input of shape [{string.Join(", ", x.shape)}]: {StepFailure.FirstLine(e.Message)}", e);
            }
        }
    }
}
