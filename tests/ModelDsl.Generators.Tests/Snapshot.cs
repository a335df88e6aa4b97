using System.IO;
using System.Runtime.CompilerServices;

namespace ModelDsl.Generators.Tests;

/// <summary>
/// Approved-file snapshots (the Verify convention: <c>Name.verified.cs</c> next to the tests, a
/// <c>Name.received.cs</c> written on mismatch). The Verify package itself is not in this registry.
/// Set <c>UPDATE_SNAPSHOTS=1</c> to accept new output after reviewing the diff.
/// </summary>
internal static class Snapshot
{
    public static void Match(string name, string actual, [CallerFilePath] string callerPath = "")
    {
        var dir = Path.Combine(Path.GetDirectoryName(callerPath)!, "Snapshots");
        var verified = Path.Combine(dir, name + ".verified.cs");
        var received = Path.Combine(dir, name + ".received.cs");
        actual = actual.Replace("\r\n", "\n");

        if (Environment.GetEnvironmentVariable("UPDATE_SNAPSHOTS") == "1")
        {
            Directory.CreateDirectory(dir);
            File.WriteAllText(verified, actual);
            if (File.Exists(received)) File.Delete(received);
            return;
        }

        if (!File.Exists(verified))
        {
            Directory.CreateDirectory(dir);
            File.WriteAllText(received, actual);
            Assert.Fail($"No approved snapshot {verified}. Review {received} and rename it (or run with UPDATE_SNAPSHOTS=1).");
        }

        var expected = File.ReadAllText(verified).Replace("\r\n", "\n");
        if (expected != actual)
        {
            File.WriteAllText(received, actual);
            Assert.Fail($"Generated code differs from {verified}; see {received}.");
        }
        if (File.Exists(received)) File.Delete(received);
    }
}
