using ModelDsl.Runtime.Training;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>File access shared by the model-file formats: reads that fail with one clear line, atomic writes.</summary>
    internal static class ModelFiles
    {
        public static byte[] ReadAll(string path)
        {
            try
            {
                return File.ReadAllBytes(path);
            }
            catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
            {
                throw new ModelFileException(path, $"There is no model file at {path}", e);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new ModelFileException(path, $"Could not read {path}: {e.Message}", e);
            }
        }

        public static void AtomicWrite(string path, Action<Stream> write)
        {
            try
            {
                AtomicFile.Write(path, stream => write(stream));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new ModelFileException(path, $"Could not write {path}: {e.Message}", e);
            }
        }
    }
}
