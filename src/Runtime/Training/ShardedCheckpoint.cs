using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using TorchSharp.Modules;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// A training strategy whose ranks each keep part of the optimiser state (ZeRO): its checkpoints are written in
    /// shards, one file per rank, by every rank (<see cref="ShardedCheckpoint"/>).
    /// </summary>
    public interface IShardedCheckpoints
    {
        /// <summary>The shard level the checkpoints record.</summary>
        ShardLevel Level { get; }
    }

    /// <summary>
    /// Sharded checkpoints (docs/distributed.md): every rank writes its shard — the parameters it owns in the partition
    /// (<see cref="Distributed.ParameterPartition"/>) and their optimiser state; rank 0 also the buffers and the
    /// optimiser's settings — atomically; once every rank has written its shard, rank 0 writes the index at the
    /// checkpoint's own path (<c>checkpoint.ckpt</c>), which names the shard files and holds what a checkpoint's
    /// metadata holds, plus the world size, the shard level and each parameter's owner. A crash before the index is
    /// written leaves the previous checkpoint (its index and its shards) as it was.
    /// </summary>
    /// <remarks>
    /// Both files are: 8 magic bytes (<c>MDSLSHIX</c> for the index, <c>MDSLSHRD</c> for a shard), the format version
    /// (int32), the JSON header's length (int32) and the header, a shard's body (the entries' bytes one after another),
    /// and the SHA-256 of every byte before it. A shard's entries: <c>tensor</c> (raw little-endian elements; shape and
    /// dtype from the index's tensor list), <c>state</c> (one parameter's optimiser state as TorchSharp serialises it)
    /// and <c>options</c> (one parameter group's settings). <see cref="Checkpoint.Load"/>, <see cref="Checkpoint.ReadState"/>
    /// and the model loader accept an index wherever they accept a checkpoint; <see cref="Consolidate"/> writes the
    /// ordinary whole checkpoint.
    /// </remarks>
    public static class ShardedCheckpoint
    {
        /// <summary>The format version this runtime writes and reads.</summary>
        public const int FormatVersion = 1;

        private static readonly byte[] IndexMagic = Encoding.ASCII.GetBytes("MDSLSHIX");
        private static readonly byte[] ShardMagic = Encoding.ASCII.GetBytes("MDSLSHRD");
        private const int HashLength = 32;

        /// <summary>Whether <paramref name="path"/> is the index of a sharded checkpoint (false when it is anything else or cannot be read).</summary>
        public static bool IsSharded(string path)
        {
            try
            {
                using var stream = File.OpenRead(path);
                var head = new byte[IndexMagic.Length];
                return stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false) == head.Length && head.AsSpan().SequenceEqual(IndexMagic);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return false;
            }
        }

        /// <summary>
        /// Writes the checkpoint at <paramref name="path"/> in shards. A collective: every rank of
        /// <paramref name="strategy"/> calls it. Each rank writes its shard (<c>path.&lt;id&gt;.shard-r-of-N</c>)
        /// atomically; when all succeeded, rank 0 writes the index at <paramref name="path"/> (atomically, last) and
        /// deletes the shards of the index it replaced. Throws <see cref="CheckpointException"/> on every rank when any
        /// rank failed (no index is written then; the previous checkpoint stands).
        /// </summary>
        public static void Save(string path, nn.Module model, OptimizerHelper optimizer, CheckpointState state, ITrainingStrategy strategy, ShardLevel level)
        {
            ArgumentException.ThrowIfNullOrEmpty(path);
            ArgumentNullException.ThrowIfNull(model);
            ArgumentNullException.ThrowIfNull(optimizer);
            ArgumentNullException.ThrowIfNull(state);
            ArgumentNullException.ThrowIfNull(strategy);
            int rank = strategy.Rank, world = strategy.WorldSize;
            // One id for this save's shard files, chosen by rank 0: a crash mid-save never overwrites the shards the
            // current index names.
            var id = new[] { rank == 0 ? (double)Random.Shared.NextInt64(1, 1L << 40) : 0 };
            strategy.SumAcrossRanks(id);
            string token = ((long)id[0]).ToString("x10", System.Globalization.CultureInfo.InvariantCulture);
            string full = Path.GetFullPath(path);
            string directory = Path.GetDirectoryName(full)!;
            var shardNames = Enumerable.Range(0, world).Select(r => $"{Path.GetFileName(full)}.{token}.shard-{r}-of-{world}").ToList();
            var owners = Owners(model, world);

            Exception? failure = null;
            string mine = Path.Combine(directory, shardNames[rank]);
            try
            {
                var header = new ShardHeader { ModelName = state.ModelName, Token = token, Rank = rank, WorldSize = world, Epoch = state.Epoch, Step = state.Step };
                var body = ShardBody(model, optimizer, owners, rank, header);
                byte[] json = JsonSerializer.SerializeToUtf8Bytes(header, TrainingJson.Compact);
                AtomicFile.Write(mine, stream => WriteFile(stream, ShardMagic, json, body));
            }
            catch (Exception e)
            {
                failure = e;
            }
            var written = new double[world];
            written[rank] = failure is null ? 1 : 0;
            strategy.SumAcrossRanks(written);
            if (failure is not null)
                throw new CheckpointException(path, $"Could not write shard {mine} of checkpoint {path}: {failure.Message} (the previous checkpoint is unchanged)", failure);
            var failed = Enumerable.Range(0, world).Where(r => written[r] < 0.5).ToList();
            if (failed.Count > 0)
                throw new CheckpointException(path, $"Could not write checkpoint {path}: rank {string.Join(", ", failed)} could not write its shard (the previous checkpoint is unchanged)");
            if (rank != 0) return;

            try
            {
                var replaced = ShardsNamedBy(full);
                var index = new ShardedIndex
                {
                    Checkpoint = CheckpointMetadata.From(state, optimizer, Checkpoint.DescribeTensors(model)),
                    WorldSize = world,
                    Shard = ShardName(level),
                    Token = token,
                    Owners = owners,
                    Shards = shardNames,
                };
                byte[] json = JsonSerializer.SerializeToUtf8Bytes(index, TrainingJson.Compact);
                AtomicFile.Write(full, stream => WriteFile(stream, IndexMagic, json, Array.Empty<(ShardEntry, byte[])>()));
                foreach (var old in replaced.Except(shardNames))
                    TryDelete(Path.Combine(directory, old));
                // Shards (and their temporary files) of a save that crashed before its index was written: no index names them.
                foreach (var stray in StrayShards(full, shardNames))
                    TryDelete(stray);
            }
            catch (Exception e) when (e is not CheckpointException)
            {
                throw new CheckpointException(path, $"Could not write checkpoint {path}: {e.Message} (the previous checkpoint is unchanged)", e);
            }
        }

        /// <summary>
        /// Verifies the index and every shard, then loads the weights into <paramref name="model"/> and, for the
        /// parameters <paramref name="stateOf"/> selects (null: all), their optimiser state into
        /// <paramref name="optimizer"/>; returns the checkpoint's state. The checks are <see cref="Checkpoint.Load"/>'s;
        /// a plan of another world size is refused with the hint to consolidate first.
        /// </summary>
        public static CheckpointState Load(string path, nn.Module model, OptimizerHelper optimizer, string expectedModelName, string expectedFingerprint, Func<string, bool>? stateOf = null)
        {
            ArgumentNullException.ThrowIfNull(expectedFingerprint);
            var sharded = Open(path);
            var metadata = sharded.Index.Checkpoint;
            CheckModel(sharded, model, expectedModelName);
            if (metadata.PlanFingerprint != expectedFingerprint)
            {
                string hint = WorldSizeOf(metadata.PlanFingerprint) is { } written && WorldSizeOf(expectedFingerprint) is { } now && written != now
                    ? $" A sharded checkpoint resumes at the world size that wrote it ({written}); for another, run `consolidate --checkpoint {path} --output FILE --world-size {now}` and resume from FILE."
                    : " Resume with the checkpoint's settings, or start a new run.";
                throw new CheckpointException(path,
                    $"Checkpoint {path} was written for a different training plan: {Checkpoint.DescribePlanDifference(metadata.PlanFingerprint, expectedFingerprint)}.{hint}");
            }
            string optimizerType = optimizer.GetType().Name;
            if (metadata.Optimizer != optimizerType)
                throw new CheckpointException(path, $"Checkpoint {path} holds {metadata.Optimizer} optimiser state, but the optimiser here is {optimizerType}");
            LoadWeights(sharded, model);
            LoadOptimizer(sharded, model, optimizer, stateOf ?? (_ => true));
            return metadata.ToState();
        }

        /// <summary>Verifies the index at <paramref name="path"/> (not the shards) and returns the checkpoint's state.</summary>
        public static CheckpointState ReadState(string path) => ReadIndex(path).Checkpoint.ToState();

        /// <summary>
        /// Reads the sharded checkpoint at <paramref name="path"/> (all shards verified) into <paramref name="model"/> and
        /// <paramref name="optimizer"/> (of the checkpoint's optimiser type) and writes it to <paramref name="output"/> as one
        /// ordinary checkpoint, atomically. <paramref name="worldSize"/>: the world size the result is to resume at (its plan
        /// fingerprint says so); null keeps the one that wrote it. When <paramref name="output"/> is <paramref name="path"/>,
        /// the shards are deleted once the whole checkpoint has replaced the index. Returns the index's description.
        /// </summary>
        public static ShardedCheckpointInfo Consolidate(string path, string output, nn.Module model, OptimizerHelper optimizer, string expectedModelName, int? worldSize = null)
        {
            ArgumentException.ThrowIfNullOrEmpty(output);
            var sharded = Open(path);
            var metadata = sharded.Index.Checkpoint;
            CheckModel(sharded, model, expectedModelName);
            if (metadata.Optimizer != optimizer.GetType().Name)
                throw new CheckpointException(path, $"Checkpoint {path} holds {metadata.Optimizer} optimiser state, but the optimiser here is {optimizer.GetType().Name}");
            LoadWeights(sharded, model);
            LoadOptimizer(sharded, model, optimizer, _ => true);
            var state = metadata.ToState();
            if (worldSize is { } n) state.PlanFingerprint = WithWorldSize(state.PlanFingerprint, n);
            Checkpoint.Save(output, model, optimizer, state);
            if (string.Equals(Path.GetFullPath(output), Path.GetFullPath(path), StringComparison.Ordinal))
                foreach (var shard in sharded.Files) TryDelete(shard.Path);
            return Describe(sharded.Index, path);
        }

        /// <summary>What the index at <paramref name="path"/> says (verified; the shards are not read).</summary>
        public static ShardedCheckpointInfo Info(string path) => Describe(ReadIndex(path), path);

        /// <summary>The optimiser type the sharded checkpoint at <paramref name="path"/> holds (SGD, Adam, AdamW).</summary>
        public static string OptimizerOf(string path) => ReadIndex(path).Checkpoint.Optimizer;

        private static ShardedCheckpointInfo Describe(ShardedIndex index, string path)
        {
            string directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
            return new ShardedCheckpointInfo(index.WorldSize, index.Shard, index.Checkpoint.Epoch, index.Checkpoint.Step,
                index.Shards.Select(s => Path.Combine(directory, s)).ToList(), WorldSizeOf(index.Checkpoint.PlanFingerprint));
        }

        /// <summary>Loads only the weights (inference: no optimiser, no plan check); <paramref name="check"/> sees the model name and tensor list first.</summary>
        internal static void LoadWeights(string path, nn.Module model, Action<string, IReadOnlyList<(string Name, long[] Shape, string DType)>> check)
        {
            var sharded = Open(path);
            check(sharded.Index.Checkpoint.ModelName, sharded.Index.Checkpoint.Tensors.Select(t => (t.Name, t.Shape, t.DType)).ToList());
            LoadWeights(sharded, model);
        }

        /// <summary>Which parameters' optimiser state this rank needs: under a sharding strategy its partition's, otherwise all.</summary>
        internal static Func<string, bool> StateNeeded(nn.Module model, ITrainingStrategy strategy)
        {
            if (strategy is not IShardedCheckpoints || strategy.WorldSize == 1) return _ => true;
            var owners = Owners(model, strategy.WorldSize);
            return name => !owners.TryGetValue(name, out int owner) || owner == strategy.Rank;
        }

        private static void CheckModel(Sharded sharded, nn.Module model, string expectedModelName)
        {
            var metadata = sharded.Index.Checkpoint;
            if (metadata.ModelName != expectedModelName)
                throw new CheckpointException(sharded.Path, $"Checkpoint {sharded.Path} was written for model '{metadata.ModelName}', not '{expectedModelName}'");
            var problems = Checkpoint.CompareTensors(metadata.Tensors, Checkpoint.DescribeTensors(model));
            if (problems.Count > 0)
                throw new CheckpointException(sharded.Path, $"Checkpoint {sharded.Path} does not fit model '{expectedModelName}': {string.Join("; ", problems.Take(10))}");
            // The partition is recomputed from the model; the index's owners must be that partition.
            var owners = Owners(model, sharded.Index.WorldSize);
            if (!owners.OrderBy(o => o.Key, StringComparer.Ordinal).SequenceEqual(sharded.Index.Owners.OrderBy(o => o.Key, StringComparer.Ordinal)))
                throw Malformed(sharded.Path, "its partition of the parameters is not the one this runtime computes for the model");
        }

        /// <summary>The owner of each parameter that requires a gradient, by state-dict name: the strategy's partition.</summary>
        private static Dictionary<string, int> Owners(nn.Module model, int worldSize)
        {
            var named = model.named_parameters().ToList();
            var partition = Distributed.ParameterPartition.Create(named.Select(p => p.parameter), worldSize);
            var byHandle = new Dictionary<IntPtr, int>();
            for (int i = 0; i < partition.Parameters.Count; i++) byHandle[partition.Parameters[i].Handle] = partition.Owner[i];
            var owners = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var (name, parameter) in named)
                if (byHandle.TryGetValue(parameter.Handle, out int owner)) owners[name] = owner;
            return owners;
        }

        /// <summary>This rank's entries: the tensors it owns (rank 0: also every other one), the optimiser state of its parameters, rank 0 the settings.</summary>
        private static List<(ShardEntry Entry, byte[] Bytes)> ShardBody(nn.Module model, OptimizerHelper optimizer, Dictionary<string, int> owners, int rank, ShardHeader header)
        {
            var body = new List<(ShardEntry, byte[])>();
            long offset = 0;
            void Add(string kind, string name, byte[] bytes)
            {
                body.Add((new ShardEntry { Kind = kind, Name = name, Offset = offset, Length = bytes.Length }, bytes));
                offset += bytes.Length;
            }
            foreach (var (name, tensor) in model.state_dict())
                if ((owners.TryGetValue(name, out int owner) ? owner : 0) == rank)
                    Add("tensor", name, Inference.TensorBytes.Read(tensor));

            var sd = optimizer.state_dict();
            if (rank == 0)
                for (int g = 0; g < sd.Options.Count; g++)
                    Add("options", g.ToString(System.Globalization.CultureInfo.InvariantCulture), Serialize(sd.Options[g].SaveStateDict));
            var names = ParameterNames(model);
            var parameters = optimizer.ParamGroups.Cast<ParamGroup>().SelectMany(g => g.Parameters).ToList();
            for (int i = 0; i < parameters.Count; i++)
            {
                string name = names.TryGetValue(parameters[i].Handle, out var n) ? n
                    : throw new InvalidOperationException("the optimiser holds a parameter that is not the model's");
                if ((owners.TryGetValue(name, out int owner) ? owner : 0) == rank)
                    Add("state", name, Serialize(sd.State[i].SaveStateDict));
            }
            header.Entries = body.Select(b => b.Item1).ToList();
            return body;
        }

        private static Dictionary<IntPtr, string> ParameterNames(nn.Module model)
        {
            var names = new Dictionary<IntPtr, string>();
            foreach (var (name, parameter) in model.named_parameters()) names.TryAdd(parameter.Handle, name);
            return names;
        }

        private static byte[] Serialize(Action<BinaryWriter> save)
        {
            using var memory = new MemoryStream();
            using (var writer = new BinaryWriter(memory, Encoding.UTF8, leaveOpen: true)) save(writer);
            return memory.ToArray();
        }

        private static void WriteFile(FileStream stream, byte[] magic, byte[] json, IReadOnlyList<(ShardEntry Entry, byte[] Bytes)> body)
        {
            using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            void Put(ReadOnlySpan<byte> bytes)
            {
                writer.Write(bytes);
                hash.AppendData(bytes);
            }
            Put(magic);
            Put(BitConverter.GetBytes(FormatVersion));
            Put(BitConverter.GetBytes(json.Length));
            Put(json);
            foreach (var (_, bytes) in body) Put(bytes);
            writer.Write(hash.GetHashAndReset());
            writer.Flush();
        }

        private static void LoadWeights(Sharded sharded, nn.Module model)
        {
            var entries = new Dictionary<string, (ShardFile File, ShardEntry Entry)>(StringComparer.Ordinal);
            foreach (var file in sharded.Files)
                foreach (var entry in file.Header.Entries.Where(e => e.Kind == "tensor"))
                    entries.TryAdd(entry.Name, (file, entry));
            var described = sharded.Index.Checkpoint.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
            using var noGrad = torch.no_grad();
            foreach (var (name, target) in model.state_dict())
            {
                if (!entries.TryGetValue(name, out var found))
                    throw Malformed(sharded.Path, $"no shard holds '{name}'");
                try
                {
                    using var source = Inference.TensorBytes.Create(found.File.Bytes(found.Entry), described[name].Shape, target.dtype);
                    target.copy_(source);
                }
                catch (InvalidDataException e)
                {
                    throw Malformed(found.File.Path, $"'{name}': {e.Message}");
                }
            }
        }

        private static void LoadOptimizer(Sharded sharded, nn.Module model, OptimizerHelper optimizer, Func<string, bool> stateOf)
        {
            var sd = optimizer.state_dict();
            var options = sharded.Files[0].Header.Entries.Where(e => e.Kind == "options").ToList();
            if (options.Count != sd.Options.Count)
                throw Malformed(sharded.Files[0].Path, $"it holds the settings of {options.Count} parameter groups, the optimiser has {sd.Options.Count}");
            var names = ParameterNames(model);
            var parameters = optimizer.ParamGroups.Cast<ParamGroup>().SelectMany(g => g.Parameters).ToList();
            var states = new Dictionary<string, (ShardFile File, ShardEntry Entry)>(StringComparer.Ordinal);
            foreach (var file in sharded.Files)
                foreach (var entry in file.Header.Entries.Where(e => e.Kind == "state"))
                    states.TryAdd(entry.Name, (file, entry));
            try
            {
                for (int g = 0; g < options.Count; g++)
                    Deserialize(sharded.Files[0].Bytes(options[g]), sd.Options[g].LoadStateDict);
                for (int i = 0; i < parameters.Count; i++)
                {
                    string name = names[parameters[i].Handle];
                    if (!stateOf(name)) continue;
                    if (!states.TryGetValue(name, out var found)) throw Malformed(sharded.Path, $"no shard holds the optimiser state of '{name}'");
                    Deserialize(found.File.Bytes(found.Entry), sd.State[i].LoadStateDict);
                }
            }
            catch (Exception e) when (e is not CheckpointException && (e is InvalidDataException or EndOfStreamException or ArgumentException || StepFailure.IsNative(e)))
            {
                throw new CheckpointException(sharded.Path, $"Could not load the optimiser state of checkpoint {sharded.Path}: {StepFailure.FirstLine(e.Message)}", e);
            }
        }

        private static void Deserialize(byte[] bytes, Action<BinaryReader> load)
        {
            using var reader = new BinaryReader(new MemoryStream(bytes), Encoding.UTF8);
            load(reader);
            if (reader.BaseStream.Position != bytes.Length) throw new InvalidDataException("an entry holds more than its reader took");
        }

        // ---- reading and verifying ----

        private sealed record Sharded(string Path, ShardedIndex Index, List<ShardFile> Files);

        private sealed record ShardFile(string Path, ShardHeader Header, byte[] Content, int BodyOffset)
        {
            public byte[] Bytes(ShardEntry entry) => Content.AsSpan(BodyOffset + (int)entry.Offset, (int)entry.Length).ToArray();
        }

        private static Sharded Open(string path)
        {
            var index = ReadIndex(path);
            string directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
            var files = new List<ShardFile>();
            for (int r = 0; r < index.Shards.Count; r++)
                files.Add(ReadShard(Path.Combine(directory, index.Shards[r]), path, index, r));
            return new Sharded(path, index, files);
        }

        private static ShardedIndex ReadIndex(string path)
        {
            var (content, json) = ReadVerified(path, IndexMagic, what: $"Checkpoint {path}", missing: $"There is no checkpoint at {path}");
            if (json.End != content.Length - HashLength) throw Malformed(path, "bytes after its header");
            ShardedIndex index;
            try
            {
                index = JsonSerializer.Deserialize<ShardedIndex>(content.AsSpan(json.Start, json.End - json.Start), TrainingJson.Compact) ?? throw Malformed(path, "no header");
            }
            catch (JsonException e)
            {
                throw Malformed(path, "the header is not valid: " + e.Message);
            }
            if (index.Checkpoint is null || index.Shards is null || index.Owners is null || index.Checkpoint.Tensors is null || index.Shards.Any(s => s is null))
                throw Malformed(path, "its header lacks a field");
            if (index.WorldSize < 1 || index.Shards.Count != index.WorldSize || index.Owners.Values.Any(o => o < 0 || o >= index.WorldSize))
                throw Malformed(path, $"it names {index.Shards.Count} shards for world size {index.WorldSize}");
            if (index.Shards.Any(s => s.Length == 0 || Path.GetFileName(s) != s))
                throw Malformed(path, "a shard's name is not a file name beside it");
            return index;
        }

        private static ShardFile ReadShard(string file, string indexPath, ShardedIndex index, int rank)
        {
            string what = $"Checkpoint shard {file} (rank {rank} of {index.WorldSize}, named by {indexPath})";
            var (content, json) = ReadVerified(file, ShardMagic, what, missing: $"{what} is missing: the checkpoint is incomplete");
            ShardHeader header;
            try
            {
                header = JsonSerializer.Deserialize<ShardHeader>(content.AsSpan(json.Start, json.End - json.Start), TrainingJson.Compact) ?? throw Malformed(file, "no header");
            }
            catch (JsonException e)
            {
                throw Malformed(file, "the header is not valid: " + e.Message);
            }
            if (header.Entries is null || header.Entries.Any(e => e is null || e.Name is null || e.Kind is null)) throw Malformed(file, "its header lacks a field");
            if (header.Token != index.Token || header.Rank != rank || header.WorldSize != index.WorldSize || header.ModelName != index.Checkpoint.ModelName)
                throw new CheckpointException(file, $"{what} belongs to another checkpoint (rank {header.Rank} of {header.WorldSize}, save {header.Token}; the index names save {index.Token})");
            long body = content.Length - HashLength - json.End;
            if (header.Entries.Any(e => e.Offset < 0 || e.Length < 0 || e.Offset + e.Length > body))
                throw Malformed(file, "an entry lies outside the file");
            return new ShardFile(file, header, content, json.End);
        }

        /// <summary>Reads <paramref name="path"/> whole, checks the magic, the checksum and the version, and returns the header's span.</summary>
        private static (byte[] Content, (int Start, int End) Json) ReadVerified(string path, byte[] magic, string what, string missing)
        {
            byte[] content;
            try
            {
                content = File.ReadAllBytes(path);
            }
            catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
            {
                throw new CheckpointException(path, missing, e);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new CheckpointException(path, $"Could not read {path}: {e.Message}", e);
            }
            if (content.Length < magic.Length || !content.AsSpan(0, magic.Length).SequenceEqual(magic))
                throw new CheckpointException(path, content.Length == 0
                    ? $"{what} is corrupt (the file is empty; it was truncated)"
                    : $"{what} is not a ModelDsl sharded checkpoint file (it does not start with \"{Encoding.ASCII.GetString(magic)}\")");
            if (content.Length < magic.Length + 8 + HashLength
                || !CryptographicOperations.FixedTimeEquals(SHA256.HashData(content.AsSpan(0, content.Length - HashLength)), content.AsSpan(content.Length - HashLength)))
                throw new CheckpointException(path, $"{what} is corrupt (checksum mismatch; the file was truncated or altered)");
            int version = BitConverter.ToInt32(content, magic.Length);
            if (version != FormatVersion)
                throw new CheckpointException(path, $"{what} has format version {version}; this version of ModelDsl reads version {FormatVersion}");
            int length = BitConverter.ToInt32(content, magic.Length + 4);
            int start = magic.Length + 8;
            if (length <= 0 || start + (long)length > content.Length - HashLength) throw Malformed(path, "bad header length");
            return (content, (start, start + length));
        }

        /// <summary>
        /// Files beside <paramref name="fullPath"/> named like one of its shards (<c>name.&lt;10 hex&gt;.shard-r-of-N</c>, or
        /// that with a temporary file's suffix) that are not in <paramref name="current"/>.
        /// </summary>
        private static IEnumerable<string> StrayShards(string fullPath, IReadOnlyCollection<string> current)
        {
            var pattern = new System.Text.RegularExpressions.Regex(
                "^" + System.Text.RegularExpressions.Regex.Escape(Path.GetFileName(fullPath)) + @"\.[0-9a-f]{10}\.shard-\d+-of-\d+(\.tmp-\d+)?$");
            return Directory.EnumerateFiles(Path.GetDirectoryName(fullPath)!)
                .Where(f => pattern.IsMatch(Path.GetFileName(f)) && !current.Contains(Path.GetFileName(f)))
                .ToList();
        }

        /// <summary>The shard files the sharded index at <paramref name="path"/> names (none when it is missing, whole or unreadable).</summary>
        internal static IReadOnlyList<string> ShardsNamedBy(string path)
        {
            if (!IsSharded(path)) return Array.Empty<string>();
            try
            {
                string directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
                return ReadIndex(path).Shards.Select(s => Path.Combine(directory, s)).ToList();
            }
            catch (CheckpointException)
            {
                return Array.Empty<string>();
            }
        }

        private static CheckpointException Malformed(string path, string what) =>
            new(path, $"Checkpoint {path} is malformed ({what}) although its checksum is correct; it was not written by this version of ModelDsl");

        private static string ShardName(ShardLevel level) => MemoryPlan.ShardName(level);

        private static int? WorldSizeOf(string fingerprint)
        {
            try
            {
                return JsonNode.Parse(fingerprint) is JsonObject o && o["WorldSize"]?.ToString() is { } text
                       && int.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int n) ? n : null;
            }
            catch (JsonException)
            {
                return null;
            }
        }

        private static string WithWorldSize(string fingerprint, int worldSize)
        {
            JsonObject? o;
            try
            {
                o = JsonNode.Parse(fingerprint) as JsonObject;
            }
            catch (JsonException)
            {
                o = null;
            }
            if (o is null) throw new CheckpointException("", "the checkpoint's plan fingerprint is not a JSON object; its world size cannot be changed");
            o["WorldSize"] = worldSize.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return o.ToJsonString(new JsonSerializerOptions { WriteIndented = false });
        }

        private static void TryDelete(string file)
        {
            try
            {
                File.Delete(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // A stale shard costs disk space only; the index no longer names it.
            }
        }

        private sealed class ShardedIndex
        {
            [JsonPropertyName("checkpoint")] public CheckpointMetadata Checkpoint { get; set; } = new();
            [JsonPropertyName("world_size")] public int WorldSize { get; set; }
            [JsonPropertyName("shard")] public string Shard { get; set; } = "";
            [JsonPropertyName("token")] public string Token { get; set; } = "";
            /// <summary>Each parameter's owner (the rank whose shard holds it and its optimiser state), by name.</summary>
            [JsonPropertyName("owners")] public Dictionary<string, int> Owners { get; set; } = new();
            /// <summary>The shard files, rank 0 first, beside the index.</summary>
            [JsonPropertyName("shards")] public List<string> Shards { get; set; } = new();
        }

        private sealed class ShardHeader
        {
            [JsonPropertyName("model_name")] public string ModelName { get; set; } = "";
            [JsonPropertyName("token")] public string Token { get; set; } = "";
            [JsonPropertyName("rank")] public int Rank { get; set; }
            [JsonPropertyName("world_size")] public int WorldSize { get; set; }
            [JsonPropertyName("epoch")] public int Epoch { get; set; }
            [JsonPropertyName("step")] public long Step { get; set; }
            [JsonPropertyName("entries")] public List<ShardEntry> Entries { get; set; } = new();
        }

        private sealed class ShardEntry
        {
            /// <summary>tensor, state or options.</summary>
            [JsonPropertyName("kind")] public string Kind { get; set; } = "";
            [JsonPropertyName("name")] public string Name { get; set; } = "";
            [JsonPropertyName("offset")] public long Offset { get; set; }
            [JsonPropertyName("length")] public long Length { get; set; }
        }
    }

    /// <summary>What a sharded checkpoint's index says: its world size, shard level, epoch, step and shard files (full paths), and the world size its plan fingerprint records.</summary>
    public sealed record ShardedCheckpointInfo(int WorldSize, string Shard, int Epoch, long Step, IReadOnlyList<string> Shards, int? PlanWorldSize);
}
