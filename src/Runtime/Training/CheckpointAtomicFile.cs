using System;
using System.Diagnostics.CodeAnalysis;
using System.IO;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// Replaces a file all at once: the content goes to <c>&lt;path&gt;.tmp-&lt;pid&gt;</c> in the same directory, is
    /// flushed to disk, and is then renamed over <c>&lt;path&gt;</c>. A rename within one file system is atomic on
    /// POSIX and NTFS, so readers see either the old file or the new one, never a mixture; a crash or an exception
    /// while writing leaves the old file as it was (and, for exceptions, no temporary file).
    /// </summary>
    internal static class AtomicFile
    {
        /// <summary>The temporary file a write to <paramref name="fullPath"/> goes through.</summary>
        public static string TemporaryPath(string fullPath) => fullPath + ".tmp-" + Environment.ProcessId;

        /// <summary>Writes <paramref name="path"/> atomically with <paramref name="write"/>, creating its directory if needed.</summary>
        public static void Write(string path, Action<FileStream> write)
        {
            string full = Path.GetFullPath(path);
            string directory = Path.GetDirectoryName(full) ?? throw new IOException($"{path} has no directory");
            Directory.CreateDirectory(directory);
            string temporary = TemporaryPath(full);
            try
            {
                using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.ReadWrite, FileShare.None, bufferSize: 1 << 16))
                {
                    write(stream);
                    stream.Flush(flushToDisk: true);
                }
                File.Move(temporary, full, overwrite: true);
            }
            catch
            {
                TryDelete(temporary);
                throw;
            }
        }

        [SuppressMessage("Design", "CA1031", Justification = "Best-effort cleanup while another exception propagates.")]
        private static void TryDelete(string file)
        {
            try
            {
                if (File.Exists(file)) File.Delete(file);
            }
            catch
            {
                // The original failure is the one worth reporting.
            }
        }
    }
}
