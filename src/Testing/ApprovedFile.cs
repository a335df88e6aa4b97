using System;
using System.IO;
using System.Runtime.CompilerServices;

namespace ModelDsl.Testing
{
    /// <summary>
    /// A minimal approved-file snapshot: <c>{name}.approved.txt</c> beside the calling test file holds the accepted
    /// text. On a difference the new text is written to <c>{name}.received.txt</c> beside it and the test fails with
    /// the first differing line; accept it by renaming the file, or run the tests once with MODELDSL_APPROVE=1.
    /// With Verify in the test project, pass the rendered text to <c>Verify</c> instead.
    /// </summary>
    public static class ApprovedFile
    {
        /// <summary>Compares <paramref name="received"/> with the approved snapshot <paramref name="name"/>.</summary>
        /// <exception cref="SnapshotMismatchException">The text differs from the approved one, or none was approved yet.</exception>
        public static void Verify(string received, string name, [CallerFilePath] string callerFilePath = "")
        {
            if (received is null) throw new ArgumentNullException(nameof(received));
            if (string.IsNullOrWhiteSpace(name) || name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0)
                throw new ArgumentException($"'{name}' is not a usable file name", nameof(name));
            string dir = Path.GetDirectoryName(callerFilePath) is { Length: > 0 } d ? d : Directory.GetCurrentDirectory();
            string approvedPath = Path.Combine(dir, name + ".approved.txt");
            string receivedPath = Path.Combine(dir, name + ".received.txt");
            string text = received.Replace("\r\n", "\n");

            if (Environment.GetEnvironmentVariable("MODELDSL_APPROVE") == "1")
            {
                File.WriteAllText(approvedPath, text);
                if (File.Exists(receivedPath)) File.Delete(receivedPath);
                return;
            }
            string? approved = File.Exists(approvedPath) ? File.ReadAllText(approvedPath).Replace("\r\n", "\n") : null;
            if (approved == text)
            {
                if (File.Exists(receivedPath)) File.Delete(receivedPath);
                return;
            }
            File.WriteAllText(receivedPath, text);
            throw new SnapshotMismatchException(approved is null
                ? $"No approved snapshot {approvedPath}; review {receivedPath} and rename it to accept it (or run with MODELDSL_APPROVE=1)."
                : $"{name} differs from {approvedPath} {FirstDifference(approved, text)}; the new text is in {receivedPath} (rename it to accept it, or run with MODELDSL_APPROVE=1).");
        }

        private static string FirstDifference(string approved, string received)
        {
            var a = approved.Split('\n');
            var r = received.Split('\n');
            for (int i = 0; i < Math.Max(a.Length, r.Length); i++)
            {
                string x = i < a.Length ? a[i] : "<end of file>", y = i < r.Length ? r[i] : "<end of file>";
                if (x != y) return $"at line {i + 1}:\n  approved: {x}\n  received: {y}\n";
            }
            return "";
        }
    }

    /// <summary>A rendered model differs from its approved snapshot.</summary>
    public sealed class SnapshotMismatchException : Exception
    {
        /// <summary>Creates the exception with its message.</summary>
        public SnapshotMismatchException(string message) : base(message) { }
    }
}
