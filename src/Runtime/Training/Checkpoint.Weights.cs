using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using static TorchSharp.torch;

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
            var (stream, layout) = OpenVerified(path);
            using (stream)
            {
                check(layout.Metadata.ModelName, layout.Metadata.Tensors.Select(t => (t.Name, t.Shape, t.DType)).ToList());
                using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
                stream.Position = layout.ModelOffset;
                model.load(reader, strict: true);
                if (stream.Position != layout.ModelOffset + layout.ModelLength)
                    throw Malformed(path, "the model section holds more or less than the model read");
            }
        }
    }
}
