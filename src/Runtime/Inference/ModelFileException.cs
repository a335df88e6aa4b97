namespace ModelDsl.Runtime.Inference
{
    /// <summary>
    /// A model file that cannot be read, written or loaded into a model: missing, not in a known format, corrupt,
    /// or holding weights of another architecture. The message is one line that names the file and, for a
    /// mismatch, the first parameter that differs.
    /// </summary>
    public sealed class ModelFileException : Exception
    {
        /// <summary>Creates the exception for the file at <paramref name="path"/>.</summary>
        public ModelFileException(string path, string message, Exception? inner = null) : base(message, inner)
        {
            Path = path;
        }

        /// <summary>The file the problem is about.</summary>
        public string Path { get; }
    }
}
