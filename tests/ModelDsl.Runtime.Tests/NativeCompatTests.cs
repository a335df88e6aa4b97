using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Microsoft.Build.Framework;
using ModelDsl.Build;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// TorchSharp's libLibTorchSharp.so needs GLIBCXX_3.4.32, which Debian 12 / Ubuntu 22.04 lack; the build marks
/// that one version need weak in the output copy (src/Runtime/build/LibTorchSharpCompat.cs). These tests check
/// that libtorch really runs, that the output copy is patched exactly when this system needs it, and the patcher
/// itself on the pristine package bytes, which are only ever read.
/// </summary>
[SupportedOSPlatform("linux")] // like the libtorch package the runtime references
public class NativeCompatTests
{
    private const string Glibcxx = ElfVersionNeedPatcher.IosBaseLibraryInitVersion; // GLIBCXX_3.4.32
    private const string LibraryName = "libLibTorchSharp.so";

    private static readonly bool SystemLacksVersion = !ElfVersionNeedPatcher.SystemLibStdCxxProvides(Glibcxx);

    /// <summary>The package's own copy. Read only: the NuGet cache is shared by every project on the machine.</summary>
    private static string CacheLibrary()
    {
        string packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } configured
            ? configured
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        System.Version v = typeof(torch).Assembly.GetName().Version!;
        string path = Path.Combine(packages, "torchsharp", $"{v.Major}.{v.Minor}.{v.Build}", "runtimes", "linux-x64", "native", LibraryName);
        Assert.True(File.Exists(path), $"TorchSharp's native library is not in the NuGet cache at {path}");
        return path;
    }

    private static string OutputLibrary()
    {
        string path = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", LibraryName);
        Assert.True(File.Exists(path), $"no {LibraryName} in the test output at {path}");
        return path;
    }

    private static ElfVersionNeed Need(IReadOnlyList<ElfVersionNeed> needs, string version) =>
        Assert.Single(needs, n => n.Version == version);

    private static List<int> DifferingOffsets(byte[] a, byte[] b)
    {
        Assert.Equal(a.Length, b.Length);
        var offsets = new List<int>();
        for (int i = 0; i < a.Length; i++)
            if (a[i] != b[i]) offsets.Add(i);
        return offsets;
    }

    [Fact]
    public void Libtorch_LoadsAndRunsForwardAndBackward()
    {
        using var scope = NewDisposeScope();
        var linear = nn.Linear(2, 1);
        using (no_grad())
        {
            linear.weight!.copy_(tensor(new[] { 0.5f, -1f }).reshape(1, 2));
            linear.bias!.copy_(tensor(new[] { 0.25f }));
        }

        var x = tensor(new[] { 1f, 2f, 3f, 4f }).reshape(2, 2);
        var y = tensor(new[] { 1f, 0f }).reshape(2, 1);
        var loss = nn.functional.mse_loss(linear.forward(x), y);
        loss.backward();

        // prediction = x·wᵀ + b = (-1.25, -2.25); residuals (-2.25, -2.25); loss = mean(r²) = 5.0625.
        // dL/dpred = 2r/2 = (-2.25, -2.25), so dL/dw = Σ dpred·x = (-2.25·4, -2.25·6) and dL/db = -4.5.
        Assert.Equal(5.0625f, loss.item<float>(), 5);
        var weightGrad = linear.weight!.grad;
        var biasGrad = linear.bias!.grad;
        Assert.NotNull(weightGrad);
        Assert.NotNull(biasGrad);
        float[] w = weightGrad!.data<float>().ToArray();
        float[] b = biasGrad!.data<float>().ToArray();
        Assert.All(w.Concat(b), g => Assert.True(float.IsFinite(g), $"non-finite gradient {g}"));
        Assert.Equal(new[] { -9f, -13.5f }, w);
        Assert.Equal(new[] { -4.5f }, b);
    }

    [Fact]
    public void OutputCopy_IsPatchedExactlyWhenTheSystemLibStdCxxLacksTheVersion()
    {
        byte[] output = File.ReadAllBytes(OutputLibrary());
        byte[] original = File.ReadAllBytes(CacheLibrary());
        IReadOnlyList<ElfVersionNeed> needs = ElfVersionNeedPatcher.ReadVersionNeeds(output);
        ElfVersionNeed need = Need(needs, Glibcxx);

        if (SystemLacksVersion)
        {
            Assert.True(need.IsWeak, $"{Glibcxx} should be weak in the output copy on this system");
            Assert.All(needs.Where(n => n.Version != Glibcxx), n => Assert.False(n.IsWeak, $"{n} should not be weak"));
            var changed = DifferingOffsets(original, output);
            Assert.NotEmpty(changed);
            Assert.All(changed, o => Assert.InRange(o, need.FlagsOffset, need.FlagsOffset + 1));
        }
        else
        {
            Assert.False(need.IsWeak);
            Assert.Equal(original, output);
        }
    }

    [Fact]
    public void UnpatchedCopy_FailsToLoadWhereTheSystemLibStdCxxLacksTheVersion()
    {
        if (!SystemLacksVersion) return; // nothing to demonstrate: the package loads as shipped here

        // Next to the real one so $ORIGIN finds libtorch; dlopen rejects it before running any of its code.
        string copy = Path.Combine(Path.GetDirectoryName(OutputLibrary())!, $"libLibTorchSharp.unpatched-{Guid.NewGuid():N}.so");
        File.Copy(CacheLibrary(), copy);
        try
        {
            var error = Assert.Throws<DllNotFoundException>(() => NativeLibrary.Load(copy));
            Assert.Contains($"version `{Glibcxx}' not found", error.Message);
        }
        finally
        {
            File.Delete(copy);
        }
    }

    [Fact]
    public void PackageCopy_NeedsTheVersionStrongly()
    {
        IReadOnlyList<ElfVersionNeed> needs = ElfVersionNeedPatcher.ReadVersionNeeds(File.ReadAllBytes(CacheLibrary()));

        ElfVersionNeed need = Need(needs, Glibcxx);
        Assert.Equal("libstdc++.so.6", need.File);
        Assert.False(need.IsWeak);
        Assert.Equal("libstdc++.so.6:" + Glibcxx, need.ToString());
        Assert.Contains(needs, n => n.ToString() == "libc.so.6:GLIBC_2.2.5");
        Assert.Contains(needs, n => n.ToString() == "libstdc++.so.6:CXXABI_1.3");
        Assert.DoesNotContain(needs, n => n.IsWeak);
    }

    [Fact]
    public void MarkWeak_ChangesOnlyTheFlagsOfThatEntry()
    {
        byte[] original = File.ReadAllBytes(CacheLibrary());
        byte[] patched = (byte[])original.Clone();
        IReadOnlyList<ElfVersionNeed> before = ElfVersionNeedPatcher.ReadVersionNeeds(original);

        Assert.True(ElfVersionNeedPatcher.MarkWeak(patched, Glibcxx));

        IReadOnlyList<ElfVersionNeed> after = ElfVersionNeedPatcher.ReadVersionNeeds(patched);
        Assert.Equal(before.Count, after.Count);
        for (int i = 0; i < before.Count; i++)
        {
            Assert.Equal(before[i].File, after[i].File);
            Assert.Equal(before[i].Version, after[i].Version);
            Assert.Equal(before[i].FlagsOffset, after[i].FlagsOffset);
            ushort expected = before[i].Version == Glibcxx ? (ushort)(before[i].Flags | ElfVersionNeedPatcher.VerFlagWeak) : before[i].Flags;
            Assert.Equal(expected, after[i].Flags);
        }

        Assert.True(Need(after, Glibcxx).IsWeak);
        int flags = Need(after, Glibcxx).FlagsOffset;
        var changed = DifferingOffsets(original, patched);
        Assert.NotEmpty(changed);
        Assert.All(changed, o => Assert.InRange(o, flags, flags + 1));
    }

    [Fact]
    public void MarkWeak_IsIdempotent()
    {
        byte[] once = File.ReadAllBytes(CacheLibrary());
        Assert.True(ElfVersionNeedPatcher.MarkWeak(once, Glibcxx));
        byte[] twice = (byte[])once.Clone();

        Assert.False(ElfVersionNeedPatcher.MarkWeak(twice, Glibcxx));
        Assert.Equal(once, twice);
    }

    [Fact]
    public void MarkWeak_UnknownVersion_ChangesNothing()
    {
        byte[] original = File.ReadAllBytes(CacheLibrary());
        byte[] copy = (byte[])original.Clone();

        Assert.False(ElfVersionNeedPatcher.MarkWeak(copy, "GLIBCXX_9.9.99"));
        Assert.False(ElfVersionNeedPatcher.MarkWeak(copy, "GLIBCXX_3.4.3")); // a prefix of the real one
        Assert.Equal(original, copy);
    }

    public static IEnumerable<object[]> Garbage()
    {
        yield return new object[] { "empty", Array.Empty<byte>() };
        yield return new object[] { "text", "not an ELF file at all, just some text"u8.ToArray() };
        var random = new byte[4096];
        new Random(7).NextBytes(random);
        yield return new object[] { "random", random };
        yield return new object[] { "magic only", new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F' } };
        var elf32 = new byte[64];
        new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F', 1, 1, 1 }.CopyTo(elf32, 0);
        yield return new object[] { "ELF32", elf32 };
        var bigEndian = new byte[64];
        new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F', 2, 2, 1 }.CopyTo(bigEndian, 0);
        yield return new object[] { "big-endian", bigEndian };
    }

    [Theory]
    [MemberData(nameof(Garbage))]
    public void Garbage_IsRejectedWithAClearError(string what, byte[] data)
    {
        byte[] before = (byte[])data.Clone();
        var read = Assert.Throws<InvalidDataException>(() => ElfVersionNeedPatcher.ReadVersionNeeds(data));
        var mark = Assert.Throws<InvalidDataException>(() => ElfVersionNeedPatcher.MarkWeak(data, Glibcxx));
        Assert.False(string.IsNullOrWhiteSpace(read.Message), what);
        Assert.Equal(read.Message, mark.Message);
        Assert.Equal(before, data);
    }

    [Theory]
    [InlineData(16)]
    [InlineData(63)]
    [InlineData(64)]
    [InlineData(500)]
    [InlineData(0x3f900)] // inside .gnu.version_r
    [InlineData(0x100000)]
    public void TruncatedLibrary_IsRejectedWithAClearError(int length)
    {
        byte[] truncated = File.ReadAllBytes(CacheLibrary())[..length];

        var error = Assert.Throws<InvalidDataException>(() => ElfVersionNeedPatcher.MarkWeak(truncated, Glibcxx));
        Assert.Matches("(?i)truncated|outside|not backed", error.Message);
    }

    [Fact]
    public void SectionHeaders_AreNotNeeded()
    {
        // Like ld.so, the patcher goes through program headers and PT_DYNAMIC only, so a library whose
        // section header table is gone (cut at e_shoff) still yields the same needs.
        byte[] full = File.ReadAllBytes(CacheLibrary());
        int sectionHeaders = checked((int)BitConverter.ToUInt64(full, 0x28));
        byte[] stripped = full[..sectionHeaders];

        Assert.Equal(ElfVersionNeedPatcher.ReadVersionNeeds(full).Select(n => n.ToString()),
            ElfVersionNeedPatcher.ReadVersionNeeds(stripped).Select(n => n.ToString()));
        Assert.True(ElfVersionNeedPatcher.MarkWeak(stripped, Glibcxx));
    }

    [Fact]
    public void CorruptVersionNeeds_AreRejectedWithoutWriting()
    {
        byte[] original = File.ReadAllBytes(CacheLibrary());
        ElfVersionNeed need = Need(ElfVersionNeedPatcher.ReadVersionNeeds(original), Glibcxx);

        // vna_name (4 bytes after vna_flags + vna_other) pointing far outside .dynstr.
        byte[] badName = (byte[])original.Clone();
        BitConverter.GetBytes(0x7fff_fff0u).CopyTo(badName, need.FlagsOffset + 4);
        byte[] snapshot = (byte[])badName.Clone();
        Assert.Throws<InvalidDataException>(() => ElfVersionNeedPatcher.MarkWeak(badName, Glibcxx));
        Assert.Equal(snapshot, badName);

        // vna_next sending the walk past the end of the file.
        byte[] badNext = (byte[])original.Clone();
        BitConverter.GetBytes(0x7fff_fff0u).CopyTo(badNext, need.FlagsOffset + 8);
        snapshot = (byte[])badNext.Clone();
        Assert.Throws<InvalidDataException>(() => ElfVersionNeedPatcher.MarkWeak(badNext, Glibcxx));
        Assert.Equal(snapshot, badNext);
    }

    [Fact]
    public void Task_PatchesACopyAtomicallyAndOnlyOnce()
    {
        string dir = Directory.CreateTempSubdirectory("modeldsl-nativecompat-").FullName;
        try
        {
            // Stand-in for the package file, reached through a symlink as Copy with
            // UseSymboliclinksIfPossible leaves it: the task must replace the link, never write through it.
            string package = Path.Combine(dir, "package.so");
            File.Copy(CacheLibrary(), package);
            byte[] original = File.ReadAllBytes(package);
            string linked = Path.Combine(dir, "linked", LibraryName);
            Directory.CreateDirectory(Path.GetDirectoryName(linked)!);
            File.CreateSymbolicLink(linked, package);

            string copied = Path.Combine(dir, "copied", LibraryName);
            Directory.CreateDirectory(Path.GetDirectoryName(copied)!);
            File.Copy(package, copied);
            UnixFileMode mode = File.GetUnixFileMode(copied);
            DateTime written = File.GetLastWriteTimeUtc(copied);

            var engine = new RecordingBuildEngine();
            var task = new PatchLibTorchSharp { BuildEngine = engine, Files = new ITaskItem[] { new Item(linked), new Item(copied) } };
            Assert.True(task.Execute());
            Assert.Empty(engine.Warnings);

            Assert.Equal(original, File.ReadAllBytes(package));
            foreach (string path in new[] { linked, copied })
            {
                byte[] now = File.ReadAllBytes(path);
                string message = $"ModelDsl: patched {path} to load with system libstdc++ ({Glibcxx} marked weak)";
                if (SystemLacksVersion)
                {
                    Assert.True(Need(ElfVersionNeedPatcher.ReadVersionNeeds(now), Glibcxx).IsWeak);
                    Assert.Contains(message, engine.Messages);
                }
                else
                {
                    Assert.Equal(original, now);
                    Assert.DoesNotContain(message, engine.Messages);
                }
            }

            if (SystemLacksVersion)
            {
                Assert.Null(new FileInfo(linked).LinkTarget);
                Assert.Equal(mode, File.GetUnixFileMode(copied));
                Assert.Equal(written, File.GetLastWriteTimeUtc(copied));
            }

            Assert.Equal(new[] { "copied", "linked", "package.so" },
                Directory.GetFileSystemEntries(dir, "*", SearchOption.AllDirectories)
                    .Where(p => !p.EndsWith(LibraryName)).Select(Path.GetFileName).Order());

            // A second build finds nothing to do.
            byte[] first = File.ReadAllBytes(copied);
            var again = new RecordingBuildEngine();
            Assert.True(new PatchLibTorchSharp { BuildEngine = again, Files = new ITaskItem[] { new Item(copied) } }.Execute());
            Assert.Equal(first, File.ReadAllBytes(copied));
            Assert.DoesNotContain(again.Messages, m => m.StartsWith("ModelDsl: patched"));
            Assert.Empty(again.Warnings);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Task_WarnsInsteadOfFailingOnABrokenFile()
    {
        string dir = Directory.CreateTempSubdirectory("modeldsl-nativecompat-").FullName;
        try
        {
            string broken = Path.Combine(dir, LibraryName);
            File.WriteAllText(broken, "not a shared library");
            var engine = new RecordingBuildEngine();
            var task = new PatchLibTorchSharp
            {
                BuildEngine = engine,
                Files = new ITaskItem[] { new Item(broken), new Item(Path.Combine(dir, "missing", LibraryName)) },
            };

            Assert.True(task.Execute());
            Assert.Empty(engine.Errors);
            Assert.Contains(engine.Warnings, w => w.Code == "MD9001" && w.Message!.Contains(broken));
            Assert.Equal("not a shared library", File.ReadAllText(broken));
            Assert.Equal(new[] { broken }, Directory.GetFiles(dir));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private sealed class Item(string spec) : ITaskItem
    {
        public string ItemSpec { get; set; } = spec;
        public ICollection MetadataNames => Array.Empty<string>();
        public int MetadataCount => 0;
        public string GetMetadata(string metadataName) => string.Empty;
        public void SetMetadata(string metadataName, string metadataValue) { }
        public void RemoveMetadata(string metadataName) { }
        public void CopyMetadataTo(ITaskItem destinationItem) { }
        public IDictionary CloneCustomMetadata() => new Hashtable();
    }

    private sealed class RecordingBuildEngine : IBuildEngine
    {
        public List<string> Messages { get; } = new();
        public List<BuildWarningEventArgs> Warnings { get; } = new();
        public List<BuildErrorEventArgs> Errors { get; } = new();

        public bool ContinueOnError => false;
        public int LineNumberOfTaskNode => 0;
        public int ColumnNumberOfTaskNode => 0;
        public string ProjectFileOfTaskNode => "test.proj";

        public void LogMessageEvent(BuildMessageEventArgs e) => Messages.Add(e.Message!);
        public void LogWarningEvent(BuildWarningEventArgs e) => Warnings.Add(e);
        public void LogErrorEvent(BuildErrorEventArgs e) => Errors.Add(e);
        public void LogCustomEvent(CustomBuildEventArgs e) { }

        public bool BuildProjectFile(string projectFileName, string[] targetNames, IDictionary globalProperties, IDictionary targetOutputs) =>
            throw new NotSupportedException();
    }
}
