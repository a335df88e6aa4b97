using System;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// A checkpoint could not be written, or could not be loaded into the given model and optimiser: missing,
    /// corrupt, for another model or another training plan, or of a different shape. The message names the file
    /// and says what is wrong; when loading fails, the model and the optimiser are unchanged.
    /// </summary>
    public sealed class CheckpointException : Exception
    {
        /// <summary>Creates the exception for the checkpoint at <paramref name="path"/>.</summary>
        public CheckpointException(string path, string message, Exception? innerException = null)
            : base(message, innerException)
        {
            Path = path;
        }

        /// <summary>The checkpoint file, as the caller named it.</summary>
        public string Path { get; }
    }
}
