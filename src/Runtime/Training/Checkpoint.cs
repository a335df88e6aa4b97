using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp.Modules;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// Checkpoint files: the model's weights, the optimiser's state and the <see cref="CheckpointState"/> in one
    /// file, written atomically and verified by SHA-256 before anything is loaded. The format and the guarantees
    /// are described in docs/report.md.
    /// </summary>
    /// <remarks>
    /// Layout (little-endian): the 8 bytes <c>MDSLCKPT</c>; the format version (int32); the metadata length (int32)
    /// and the metadata as UTF-8 JSON; the model section length (int64) and the model's state dictionary as
    /// <c>Module.save</c> writes it; the optimiser section length (int64) and the optimiser state as
    /// <c>save_state_dict</c> writes it; the SHA-256 of every byte before it (32 bytes).
    /// </remarks>
    public static partial class Checkpoint
    {
        /// <summary>The rolling checkpoint a trainer rewrites (atomically) after every epoch, inside its checkpoint directory.</summary>
        public const string FileName = "checkpoint.ckpt";

        /// <summary>The format version this runtime writes and reads.</summary>
        public const int FormatVersion = 1;

        private static readonly byte[] Magic = Encoding.ASCII.GetBytes("MDSLCKPT");
        private const int HashLength = 32;
        // magic, version, metadata length, model length, optimiser length, hash.
        private const long MinimumLength = 8 + 4 + 4 + 8 + 8 + HashLength;
        private const int MaxListedProblems = 10;

        /// <summary>
        /// The rolling checkpoint in <paramref name="directory"/> (<c>directory/checkpoint.ckpt</c>), or null when
        /// there is none. Temporary files of interrupted writes (<c>checkpoint.ckpt.tmp-&lt;pid&gt;</c>) are never returned.
        /// </summary>
        public static string? Latest(string directory)
        {
            ArgumentException.ThrowIfNullOrEmpty(directory);
            string path = Path.Combine(directory, FileName);
            return File.Exists(path) ? path : null;
        }

        /// <summary>
        /// Writes a checkpoint to <paramref name="path"/> atomically: to <c>path.tmp-&lt;pid&gt;</c> first, flushed to
        /// disk, then renamed over <paramref name="path"/>. If anything fails, the temporary file is deleted, the
        /// previous file at <paramref name="path"/> is untouched, and a <see cref="CheckpointException"/> is thrown.
        /// The directory is created if needed.
        /// </summary>
        public static void Save(string path, nn.Module model, OptimizerHelper optimizer, CheckpointState state)
        {
            ArgumentException.ThrowIfNullOrEmpty(path);
            ArgumentNullException.ThrowIfNull(model);
            ArgumentNullException.ThrowIfNull(optimizer);
            ArgumentNullException.ThrowIfNull(state);
            try
            {
                var metadata = CheckpointMetadata.From(state, optimizer, DescribeTensors(model));
                byte[] json = JsonSerializer.SerializeToUtf8Bytes(metadata, TrainingJson.Compact);
                AtomicFile.Write(path, stream => WriteBody(stream, json, model, optimizer));
            }
            catch (Exception e) when (e is not CheckpointException)
            {
                throw new CheckpointException(path,
                    $"Could not write checkpoint {path}: {e.Message} (any previous checkpoint there is unchanged)", e);
            }
        }

        /// <summary>
        /// Loads the checkpoint at <paramref name="path"/> into <paramref name="model"/> and
        /// <paramref name="optimizer"/> and returns its state. Everything is checked first: the checksum, the
        /// format version, the model name, the plan fingerprint, every tensor's name, shape and dtype, and the
        /// optimiser type; any mismatch throws <see cref="CheckpointException"/> with the model and optimiser
        /// untouched. Nothing global (such as the RNG) is restored: that is the caller's job. A sharded checkpoint's
        /// index is read through <see cref="ShardedCheckpoint.Load"/> (every shard verified first).
        /// </summary>
        public static CheckpointState Load(string path, nn.Module model, OptimizerHelper optimizer, string expectedModelName, string expectedFingerprint)
        {
            ArgumentException.ThrowIfNullOrEmpty(path);
            ArgumentNullException.ThrowIfNull(model);
            ArgumentNullException.ThrowIfNull(optimizer);
            ArgumentNullException.ThrowIfNull(expectedModelName);
            ArgumentNullException.ThrowIfNull(expectedFingerprint);
            if (ShardedCheckpoint.IsSharded(path))
                return ShardedCheckpoint.Load(path, model, optimizer, expectedModelName, expectedFingerprint);

            var (stream, layout) = OpenVerified(path);
            using (stream)
            {
                var metadata = layout.Metadata;
                if (metadata.ModelName != expectedModelName)
                    throw new CheckpointException(path,
                        $"Checkpoint {path} was written for model '{metadata.ModelName}', not '{expectedModelName}'");

                if (metadata.PlanFingerprint != expectedFingerprint)
                    throw new CheckpointException(path,
                        $"Checkpoint {path} was written for a different training plan: {DescribePlanDifference(metadata.PlanFingerprint, expectedFingerprint)}. " +
                        "Resume with the checkpoint's settings, or start a new run.");

                var problems = CompareTensors(metadata.Tensors, DescribeTensors(model));
                if (problems.Count > 0)
                    throw new CheckpointException(path,
                        $"Checkpoint {path} does not fit model '{expectedModelName}': {Join(problems)}");

                string optimizerType = optimizer.GetType().Name;
                if (metadata.Optimizer != optimizerType)
                    throw new CheckpointException(path,
                        $"Checkpoint {path} holds {metadata.Optimizer} optimiser state, but the optimiser here is {optimizerType}");

                Restore(path, stream, layout, model, optimizer);
                return metadata.ToState();
            }
        }

        /// <summary>
        /// Verifies the checkpoint at <paramref name="path"/> (magic, checksum, version) and returns its state without
        /// loading any weights: for tools that inspect checkpoints, or to decide how to resume.
        /// </summary>
        public static CheckpointState ReadState(string path)
        {
            ArgumentException.ThrowIfNullOrEmpty(path);
            if (ShardedCheckpoint.IsSharded(path)) return ShardedCheckpoint.ReadState(path);
            var (stream, layout) = OpenVerified(path);
            stream.Dispose();
            return layout.Metadata.ToState();
        }

        private static void WriteBody(FileStream stream, byte[] metadata, nn.Module model, OptimizerHelper optimizer)
        {
            using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            writer.Write(Magic);
            writer.Write(FormatVersion);
            writer.Write(metadata.Length);
            writer.Write(metadata);

            long modelLengthAt = stream.Position;
            writer.Write(0L);
            model.save(writer);
            writer.Flush();
            long modelLength = stream.Position - modelLengthAt - 8;

            long optimizerLengthAt = stream.Position;
            writer.Write(0L);
            optimizer.save_state_dict(writer);
            writer.Flush();
            long end = stream.Position;
            long optimizerLength = end - optimizerLengthAt - 8;

            stream.Position = modelLengthAt;
            writer.Write(modelLength);
            stream.Position = optimizerLengthAt;
            writer.Write(optimizerLength);
            writer.Flush();

            // Hash what is on its way to disk, then append the hash.
            byte[] hash = HashPrefix(stream, end);
            stream.Position = end;
            writer.Write(hash);
            writer.Flush();
        }

        private static byte[] HashPrefix(Stream stream, long length)
        {
            stream.Position = 0;
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            byte[] buffer = new byte[1 << 16];
            long remaining = length;
            while (remaining > 0)
            {
                int read = stream.Read(buffer, 0, (int)Math.Min(buffer.Length, remaining));
                if (read <= 0) throw new EndOfStreamException();
                hash.AppendData(buffer, 0, read);
                remaining -= read;
            }
            return hash.GetHashAndReset();
        }

        private sealed record Layout(CheckpointMetadata Metadata, long ModelOffset, long ModelLength, long OptimizerOffset, long OptimizerLength);

        private static (FileStream Stream, Layout Layout) OpenVerified(string path)
        {
            FileStream stream;
            try
            {
                stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
            }
            catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
            {
                throw new CheckpointException(path, $"There is no checkpoint at {path}", e);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new CheckpointException(path, $"Could not read checkpoint {path}: {e.Message}", e);
            }

            try
            {
                return (stream, Verify(path, stream));
            }
            catch (Exception e)
            {
                stream.Dispose();
                if (e is CheckpointException) throw;
                if (e is IOException or UnauthorizedAccessException)
                    throw new CheckpointException(path, $"Could not read checkpoint {path}: {e.Message}", e);
                throw;
            }
        }

        private static Layout Verify(string path, FileStream stream)
        {
            long length = stream.Length;
            byte[] head = new byte[Magic.Length];
            int got = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
            if (got < Magic.Length || !head.AsSpan().SequenceEqual(Magic))
                throw new CheckpointException(path,
                    length == 0
                        ? $"Checkpoint {path} is corrupt (the file is empty; it was truncated)"
                        : $"{path} is not a ModelDsl checkpoint (it does not start with \"MDSLCKPT\")");

            if (length < MinimumLength) throw Corrupt(path);
            byte[] expected = HashPrefix(stream, length - HashLength);
            byte[] stored = new byte[HashLength];
            stream.ReadExactly(stored);
            if (!CryptographicOperations.FixedTimeEquals(expected, stored)) throw Corrupt(path);

            // The bytes are exactly what a writer produced; from here on a problem is a format problem.
            stream.Position = Magic.Length;
            using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
            int version = reader.ReadInt32();
            if (version != FormatVersion)
                throw new CheckpointException(path,
                    $"Checkpoint {path} has format version {version}; this version of ModelDsl reads version {FormatVersion}");

            int metadataLength = reader.ReadInt32();
            if (metadataLength <= 0 || metadataLength > length - MinimumLength) throw Malformed(path, "bad metadata length");
            byte[] json = reader.ReadBytes(metadataLength);
            CheckpointMetadata metadata;
            try
            {
                metadata = JsonSerializer.Deserialize<CheckpointMetadata>(json, TrainingJson.Compact)
                           ?? throw Malformed(path, "no metadata");
            }
            catch (JsonException e)
            {
                throw Malformed(path, "the metadata is not valid: " + e.Message);
            }

            long modelLength = reader.ReadInt64();
            long modelOffset = stream.Position;
            if (modelLength < 0 || modelOffset + modelLength + 8 > length - HashLength) throw Malformed(path, "bad model section length");
            stream.Position = modelOffset + modelLength;
            long optimizerLength = reader.ReadInt64();
            long optimizerOffset = stream.Position;
            if (optimizerLength < 0 || optimizerOffset + optimizerLength != length - HashLength) throw Malformed(path, "bad optimiser section length");

            return new Layout(metadata, modelOffset, modelLength, optimizerOffset, optimizerLength);
        }

        private static CheckpointException Corrupt(string path) =>
            new(path, $"Checkpoint {path} is corrupt (checksum mismatch; the file was truncated or altered)");

        private static CheckpointException Malformed(string path, string what) =>
            new(path, $"Checkpoint {path} is malformed ({what}) although its checksum is correct; it was not written by this version of ModelDsl");

        /// <summary>
        /// Loads the sections; if libtorch rejects anything after all the checks, puts the previous weights and
        /// optimiser state back so that a failed load changes nothing.
        /// </summary>
        private static void Restore(string path, FileStream stream, Layout layout, nn.Module model, OptimizerHelper optimizer)
        {
            var modelBackup = new Dictionary<string, Tensor>();
            using var optimizerBackup = new MemoryStream();
            try
            {
                using (torch.no_grad())
                {
                    foreach (var (name, tensor) in model.state_dict())
                    {
                        using var detached = tensor.detach();
                        modelBackup[name] = detached.clone();
                    }
                }
                using (var backupWriter = new BinaryWriter(optimizerBackup, Encoding.UTF8, leaveOpen: true))
                    optimizer.save_state_dict(backupWriter);

                CheckModelSection(path, stream, layout, model);
                try
                {
                    using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
                    stream.Position = layout.ModelOffset;
                    model.load(reader, strict: true);
                    if (stream.Position != layout.ModelOffset + layout.ModelLength)
                        throw new InvalidDataException("the model section holds more or less than the model read");
                    stream.Position = layout.OptimizerOffset;
                    optimizer.load_state_dict(reader);
                    if (stream.Position != layout.OptimizerOffset + layout.OptimizerLength)
                        throw new InvalidDataException("the optimiser section holds more or less than the optimiser read");
                }
                catch (Exception e)
                {
                    using (torch.no_grad())
                    {
                        foreach (var (name, tensor) in model.state_dict())
                            if (modelBackup.TryGetValue(name, out var saved)) tensor.copy_(saved);
                    }
                    optimizerBackup.Position = 0;
                    using (var backupReader = new BinaryReader(optimizerBackup, Encoding.UTF8, leaveOpen: true))
                        optimizer.load_state_dict(backupReader);
                    throw new CheckpointException(path, $"Could not load checkpoint {path}: {e.Message} (the model and optimiser are unchanged)", e);
                }
            }
            finally
            {
                foreach (var tensor in modelBackup.Values) tensor.Dispose();
            }
        }

        internal static List<CheckpointTensor> DescribeTensors(nn.Module model)
        {
            var parameters = new HashSet<string>(model.named_parameters().Select(p => p.name), StringComparer.Ordinal);
            var result = new List<CheckpointTensor>();
            foreach (var (name, tensor) in model.state_dict())
            {
                result.Add(new CheckpointTensor
                {
                    Name = name,
                    Kind = parameters.Contains(name) ? "parameter" : "buffer",
                    Shape = tensor.shape.ToArray(),
                    DType = tensor.dtype.ToString(),
                });
            }
            return result;
        }

        internal static List<string> CompareTensors(List<CheckpointTensor> stored, List<CheckpointTensor> current)
        {
            var problems = new List<string>();
            var inModel = current.ToDictionary(t => t.Name, StringComparer.Ordinal);
            var inCheckpoint = new HashSet<string>(StringComparer.Ordinal);
            foreach (var s in stored)
            {
                inCheckpoint.Add(s.Name);
                if (!inModel.TryGetValue(s.Name, out var m))
                    problems.Add($"{s.Kind} '{s.Name}' {Shape(s.Shape)} is in the checkpoint but not in the model");
                else if (!s.Shape.SequenceEqual(m.Shape))
                    problems.Add($"{m.Kind} '{s.Name}' is {Shape(s.Shape)} in the checkpoint but {Shape(m.Shape)} in the model");
                else if (s.DType != m.DType)
                    problems.Add($"{m.Kind} '{s.Name}' is {s.DType} in the checkpoint but {m.DType} in the model");
            }
            foreach (var m in current)
                if (!inCheckpoint.Contains(m.Name))
                    problems.Add($"{m.Kind} '{m.Name}' {Shape(m.Shape)} is in the model but not in the checkpoint");
            return problems;
        }

        private static string Shape(long[] shape) => "[" + string.Join(", ", shape.Select(d => d.ToString(CultureInfo.InvariantCulture))) + "]";

        private static string Join(List<string> problems) =>
            problems.Count <= MaxListedProblems
                ? string.Join("; ", problems)
                : string.Join("; ", problems.Take(MaxListedProblems)) + $"; and {problems.Count - MaxListedProblems} more";

        /// <summary>
        /// Says how two plan fingerprints differ: key by key when both are JSON objects (as
        /// <see cref="TrainingPlan.Fingerprint"/> writes them), otherwise by showing both.
        /// </summary>
        internal static string DescribePlanDifference(string stored, string current)
        {
            var a = TryParseObject(stored);
            var b = TryParseObject(current);
            if (a is null || b is null)
                return $"the checkpoint's plan is {Abbreviate(stored)}, this run's is {Abbreviate(current)}";

            var differences = new List<string>();
            foreach (var (key, value) in a)
            {
                if (!b.TryGetPropertyValue(key, out var now))
                    differences.Add($"'{key}' is {Show(value)} in the checkpoint but not set in this run");
                else if (!JsonNode.DeepEquals(value, now))
                    differences.Add($"'{key}' is {Show(value)} in the checkpoint but {Show(now)} in this run");
            }
            foreach (var (key, value) in b)
                if (!a.ContainsKey(key))
                    differences.Add($"'{key}' is not set in the checkpoint but is {Show(value)} in this run");

            return differences.Count > 0
                ? Join(differences)
                : $"the fingerprints differ only in form: {Abbreviate(stored)} vs {Abbreviate(current)}";
        }

        private static JsonObject? TryParseObject(string text)
        {
            try
            {
                return JsonNode.Parse(text) as JsonObject;
            }
            catch (JsonException)
            {
                return null;
            }
        }

        private static string Show(JsonNode? node) =>
            node is null ? "null"
            : node is JsonValue v && v.TryGetValue(out string? s) ? (s.Length > 0 ? s : "\"\"")
            : node.ToJsonString();

        private static string Abbreviate(string text) =>
            text.Length <= 200 ? $"'{text}'" : $"'{text.Substring(0, 200)}…'";
    }
}
