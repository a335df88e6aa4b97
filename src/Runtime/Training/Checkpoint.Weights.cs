using System.Text;

namespace ModelDsl.Runtime.Training
{
    public static partial class Checkpoint
    {
        /// <summary>
        /// The checkpoint of the epoch with the best validation loss so far, beside <see cref="FileName"/> in the
        /// checkpoint directory; a complete checkpoint, so it can be loaded for inference or resumed from.
        /// </summary>
        public const string BestFileName = "best.ckpt";

        /// <summary>
        /// Loads only the model's weights from a verified checkpoint: no optimiser and no plan fingerprint, so a
        /// checkpoint stays usable for inference after the [Train] plan changed. <paramref name="check"/> sees the
        /// stored model name and tensor list first and throws if they do not fit; the weights are read only then.
        /// </summary>
        internal static void LoadWeights(string path, nn.Module model, Action<string, IReadOnlyList<(string Name, long[] Shape, string DType)>> check)
        {
            if (ShardedCheckpoint.IsSharded(path))
            {
                ShardedCheckpoint.LoadWeights(path, model, check);
                return;
            }
            var (stream, layout) = OpenVerified(path);
            using (stream)
            {
                check(layout.Metadata.ModelName, layout.Metadata.Tensors.Select(t => (t.Name, t.Shape, t.DType)).ToList());
                CheckModelSection(path, stream, layout, model);
                using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
                stream.Position = layout.ModelOffset;
                model.load(reader, strict: true);
                if (stream.Position != layout.ModelOffset + layout.ModelLength)
                    throw Malformed(path, "the model section holds more or less than the model read");
            }
        }

        /// <summary>
        /// Parses the model section (every length checked against the bytes there) and requires exactly the model's
        /// tensors, in order, with their dtypes and shapes, before libtorch reads it: behind a correct checksum, a
        /// section that disagrees with the metadata is a format problem, not an allocation the file cannot back.
        /// </summary>
        private static void CheckModelSection(string path, FileStream stream, Layout layout, nn.Module model)
        {
            if (layout.ModelLength > Array.MaxLength) return; // beyond a byte array: libtorch's reader checks it alone
            var section = new byte[layout.ModelLength];
            stream.Position = layout.ModelOffset;
            stream.ReadExactly(section);
            List<Inference.TorchSharpFormat.Entry> entries;
            try
            {
                entries = Inference.TorchSharpFormat.ReadEntries(section);
            }
            catch (InvalidDataException e)
            {
                throw Malformed(path, "model section: " + e.Message);
            }
            var expected = model.state_dict().ToList();
            for (int i = 0; i < Math.Max(entries.Count, expected.Count); i++)
            {
                if (i >= entries.Count || i >= expected.Count || entries[i].Name != expected[i].Key
                    || entries[i].DType != expected[i].Value.dtype || !entries[i].Shape.SequenceEqual(expected[i].Value.shape))
                    throw Malformed(path, $"the model section's tensor {i + 1} is not the model's {(i < expected.Count ? "'" + expected[i].Key + "'" : "")}");
            }
        }
    }
}
