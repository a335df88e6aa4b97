// Lets TorchSharp's native bridge load on Linux systems whose libstdc++ predates GCC 13.
//
// libLibTorchSharp.so (TorchSharp 0.107.0) was linked by GCC 13.2, whose <iostream> makes every
// translation unit reference std::ios_base_library_init() (_ZSt21ios_base_library_initv) at symbol
// version GLIBCXX_3.4.32. The reference only exists to pull in the libstdc++ that initialises the
// standard streams; nothing ever calls it or relocates against it. Debian 12 and Ubuntu 22.04 ship
// libstdc++ up to GLIBCXX_3.4.30, and ld.so refuses to load any object whose version needs
// (.gnu.version_r) name a version the providing library does not define:
//     version `GLIBCXX_3.4.32' not found (required by .../libLibTorchSharp.so)
// An entry flagged VER_FLG_WEAK is exempt from that check (glibc elf/dl-version.c), so flipping one
// bit in the copy of the library that gets loaded is enough. The flag is harmless where the version
// does exist: the loader verifies it as usual.
//
// This file is compiled twice: by RoslynCodeTaskFactory as an MSBuild inline task (against
// netstandard2.0 plus Microsoft.Build.Framework/Utilities.Core, no preprocessor symbols, whatever
// C# version the SDK's compiler defaults to) and by the runtime test project. Hence the
// netstandard2.0-only API surface, no records/init/ranges, and explicit little-endian decoding.

#nullable enable

using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Build.Framework;

namespace ModelDsl.Build
{
    /// <summary>One Vernaux entry of an ELF object: "needs <see cref="Version"/> from <see cref="File"/>".</summary>
    public sealed class ElfVersionNeed
    {
        public ElfVersionNeed(string file, string version, ushort flags, int flagsOffset)
        {
            File = file;
            Version = version;
            Flags = flags;
            FlagsOffset = flagsOffset;
        }

        /// <summary>The DT_NEEDED soname the version is required from (vn_file), e.g. libstdc++.so.6.</summary>
        public string File { get; }

        /// <summary>The version name (vna_name), e.g. GLIBCXX_3.4.32.</summary>
        public string Version { get; }

        /// <summary>vna_flags.</summary>
        public ushort Flags { get; }

        /// <summary>File offset of the two vna_flags bytes.</summary>
        public int FlagsOffset { get; }

        public bool IsWeak => (Flags & ElfVersionNeedPatcher.VerFlagWeak) != 0;

        public override string ToString() => IsWeak ? File + ":" + Version + ":weak" : File + ":" + Version;
    }

    /// <summary>What <see cref="ElfVersionNeedPatcher.PatchFile"/> did to a file.</summary>
    public enum PatchOutcome
    {
        /// <summary>The file does not need the version at all (another TorchSharp build).</summary>
        NotNeeded,

        /// <summary>Every system libstdc++ defines the version; left untouched.</summary>
        SystemProvides,

        /// <summary>The version was already weak (patched by an earlier build).</summary>
        AlreadyWeak,

        /// <summary>The version need was marked weak and the file atomically replaced.</summary>
        Patched,
    }

    /// <summary>Result of <see cref="ElfVersionNeedPatcher.PatchFile"/>.</summary>
    public sealed class PatchResult
    {
        public PatchResult(PatchOutcome outcome, IReadOnlyList<string> stillMissing)
        {
            Outcome = outcome;
            StillMissing = stillMissing;
        }

        public PatchOutcome Outcome { get; }

        /// <summary>
        /// Other libstdc++ versions the file strongly needs that the system library lacks. Marking
        /// GLIBCXX_3.4.32 weak does not make the file loadable while this is non-empty.
        /// </summary>
        public IReadOnlyList<string> StillMissing { get; }
    }

    /// <summary>Reads and edits the symbol-version requirements (.gnu.version_r) of ELF64 little-endian objects.</summary>
    public static class ElfVersionNeedPatcher
    {
        /// <summary>VER_FLG_WEAK: a missing version is not fatal to the dynamic loader.</summary>
        public const ushort VerFlagWeak = 0x2;

        /// <summary>The one version libLibTorchSharp.so needs only through std::ios_base_library_init().</summary>
        public const string IosBaseLibraryInitVersion = "GLIBCXX_3.4.32";

        /// <summary>Where distributions put the 64-bit libstdc++, in rough loader-search order.</summary>
        public static readonly IReadOnlyList<string> StandardLibStdCxxPaths = new[]
        {
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
            "/lib/aarch64-linux-gnu/libstdc++.so.6",
            "/usr/lib64/libstdc++.so.6",
            "/lib64/libstdc++.so.6",
            "/usr/lib/libstdc++.so.6",
            "/lib/libstdc++.so.6",
        };

        private const int ElfHeaderSize = 64;
        private const int ProgramHeaderSize = 56;
        private const int DynamicEntrySize = 16;
        private const int VerneedSize = 16;
        private const int VernauxSize = 16;

        private const uint PtLoad = 1;
        private const uint PtDynamic = 2;
        private const ushort PnXnum = 0xffff;

        private const ulong DtNull = 0;
        private const ulong DtStrtab = 5;
        private const ulong DtStrsz = 10;
        private const ulong DtVerneed = 0x6ffffffe;
        private const ulong DtVerneednum = 0x6fffffff;

        private const ushort VerNeedCurrent = 1;

        /// <summary>
        /// Every Vernaux entry of <paramref name="elf"/>, in file order. Empty for objects without
        /// version needs (static executables, objects linked without symbol versioning).
        /// </summary>
        /// <exception cref="InvalidDataException">Not an ELF64 little-endian object, or a malformed one.</exception>
        public static IReadOnlyList<ElfVersionNeed> ReadVersionNeeds(byte[] elf)
        {
            if (elf == null) throw new ArgumentNullException(nameof(elf));
            ValidateHeader(elf);

            // The loader reads version needs through PT_DYNAMIC, not through section headers (which may
            // be stripped), so this walks the same structures it does: DT_VERNEED and DT_STRTAB are
            // virtual addresses and are mapped back to file offsets through the PT_LOAD segments.
            var loads = new List<Segment>();
            Segment? dynamic = null;
            foreach (Segment segment in ReadProgramHeaders(elf))
            {
                if (segment.Type == PtLoad) loads.Add(segment);
                else if (segment.Type == PtDynamic) dynamic = segment;
            }

            var needs = new List<ElfVersionNeed>();
            if (dynamic == null) return needs;

            ulong? strtab = null, strsz = null, verneed = null, verneedNum = null;
            ulong dynCount = dynamic.FileSize / DynamicEntrySize;
            for (ulong i = 0; i < dynCount; i++)
            {
                ulong entry = dynamic.Offset + i * DynamicEntrySize;
                ulong tag = ReadU64(elf, entry);
                ulong value = ReadU64(elf, entry + 8);
                if (tag == DtNull) break;
                if (tag == DtStrtab) strtab = value;
                else if (tag == DtStrsz) strsz = value;
                else if (tag == DtVerneed) verneed = value;
                else if (tag == DtVerneednum) verneedNum = value;
            }

            if (verneed == null) return needs;
            if (strtab == null || strsz == null)
                throw new InvalidDataException("ELF dynamic section has DT_VERNEED but no DT_STRTAB/DT_STRSZ.");

            ulong strOffset = MapAddress(loads, strtab.Value, strsz.Value, "DT_STRTAB");
            ulong strSize = strsz.Value;

            // DT_VERNEEDNUM bounds the walk; without it, trust vn_next, but never past what the file could hold.
            ulong maxEntries = (ulong)elf.Length / VerneedSize;
            ulong count = verneedNum ?? maxEntries;
            if (count > maxEntries)
                throw new InvalidDataException("ELF DT_VERNEEDNUM (" + count + ") exceeds what the file can hold.");

            ulong vn = MapAddress(loads, verneed.Value, VerneedSize, "DT_VERNEED");
            for (ulong n = 0; n < count; n++)
            {
                ushort vnVersion = ReadU16(elf, vn);
                if (vnVersion != VerNeedCurrent)
                    throw new InvalidDataException("Unsupported Verneed revision " + vnVersion + " at offset 0x" + vn.ToString("x") + ".");
                ushort vnCnt = ReadU16(elf, vn + 2);
                string file = ReadString(elf, strOffset, strSize, ReadU32(elf, vn + 4));
                uint vnAux = ReadU32(elf, vn + 8);
                uint vnNext = ReadU32(elf, vn + 12);

                ulong aux = vn + vnAux;
                for (int a = 0; a < vnCnt; a++)
                {
                    CheckRange(elf, aux, VernauxSize, "Vernaux entry");
                    ushort flags = ReadU16(elf, aux + 4);
                    string version = ReadString(elf, strOffset, strSize, ReadU32(elf, aux + 8));
                    needs.Add(new ElfVersionNeed(file, version, flags, checked((int)(aux + 4))));
                    uint vnaNext = ReadU32(elf, aux + 12);
                    if (vnaNext == 0) break;
                    aux += vnaNext;
                }

                if (vnNext == 0) break;
                vn += vnNext;
            }

            return needs;
        }

        /// <summary>
        /// Sets VER_FLG_WEAK on every Vernaux entry named <paramref name="versionName"/>, in place.
        /// Touches nothing but those vna_flags bytes.
        /// </summary>
        /// <returns>True if a byte changed; false if no entry has that name or all are already weak.</returns>
        /// <exception cref="InvalidDataException">Not an ELF64 little-endian object, or a malformed one.</exception>
        public static bool MarkWeak(byte[] elf, string versionName)
        {
            if (versionName == null) throw new ArgumentNullException(nameof(versionName));
            bool changed = false;
            foreach (ElfVersionNeed need in ReadVersionNeeds(elf))
            {
                if (need.Version != versionName || need.IsWeak) continue;
                WriteU16(elf, (ulong)need.FlagsOffset, (ushort)(need.Flags | VerFlagWeak));
                changed = true;
            }

            return changed;
        }

        /// <summary>True if <paramref name="library"/> contains the NUL-terminated version name, i.e. defines or mentions it.</summary>
        /// <remarks>
        /// Version definitions live in .gnu.version_d with their names in .dynstr; a library defining
        /// GLIBCXX_3.4.32 necessarily carries that exact string. The terminating NUL keeps
        /// GLIBCXX_3.4.3 from matching GLIBCXX_3.4.32.
        /// </remarks>
        public static bool ContainsVersionString(byte[] library, string version)
        {
            byte[] needle = Encoding.ASCII.GetBytes(version + "\0");
            int last = library.Length - needle.Length;
            for (int i = 0; i <= last; i++)
            {
                if (library[i] != needle[0]) continue;
                int j = 1;
                while (j < needle.Length && library[i + j] == needle[j]) j++;
                if (j == needle.Length) return true;
            }

            return false;
        }

        /// <summary>
        /// The libstdc++.so.6 files the dynamic loader might pick: the standard locations plus the
        /// directories named in /etc/ld.so.conf.d/*.conf. Only ELF64 little-endian files for
        /// <paramref name="machine"/> (e_machine; 0 for any) are returned, so 32-bit multiarch copies
        /// do not count.
        /// </summary>
        public static IReadOnlyList<string> FindSystemLibStdCxx(ushort machine = 0)
        {
            var candidates = new List<string>(StandardLibStdCxxPaths);
            foreach (string dir in LdSoConfDirectories())
                candidates.Add(Path.Combine(dir, "libstdc++.so.6"));

            var found = new List<string>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (string path in candidates)
            {
                if (!seen.Add(path) || !System.IO.File.Exists(path)) continue;
                try
                {
                    byte[] header = ReadPrefix(path, ElfHeaderSize);
                    if (!IsElf64LittleEndian(header)) continue;
                    if (machine != 0 && ReadU16(header, 18) != machine) continue;
                    found.Add(path);
                }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }

            return found;
        }

        /// <summary>
        /// True if libstdc++ copies exist on this system and every one of them defines <paramref name="version"/>.
        /// Which copy the loader picks depends on ld.so.cache and LD_LIBRARY_PATH at run time, so only
        /// a unanimous answer counts as "provided"; patching when unsure costs nothing.
        /// </summary>
        public static bool SystemLibStdCxxProvides(string version, ushort machine = 0)
        {
            return MissingFromSystemLibStdCxx(new[] { version }, machine).Count == 0;
        }

        /// <summary>
        /// The subset of <paramref name="versions"/> that some system libstdc++ (or, if none is found,
        /// the system as a whole) lacks.
        /// </summary>
        public static IReadOnlyList<string> MissingFromSystemLibStdCxx(IEnumerable<string> versions, ushort machine = 0)
        {
            var wanted = new List<string>(versions);
            IReadOnlyList<string> libraries = FindSystemLibStdCxx(machine);
            if (libraries.Count == 0) return wanted;

            var missing = new List<string>();
            var contents = new List<byte[]>();
            foreach (string path in libraries) contents.Add(System.IO.File.ReadAllBytes(path));
            foreach (string version in wanted)
            {
                foreach (byte[] library in contents)
                {
                    if (!ContainsVersionString(library, version))
                    {
                        missing.Add(version);
                        break;
                    }
                }
            }

            return missing;
        }

        /// <summary>e_machine of a validated ELF64 little-endian object (62 = x86-64, 183 = AArch64).</summary>
        public static ushort ReadMachine(byte[] elf)
        {
            ValidateHeader(elf);
            return ReadU16(elf, 18);
        }

        /// <summary>
        /// Marks <see cref="IosBaseLibraryInitVersion"/> weak in the file at <paramref name="path"/> if
        /// the file needs it and the system libstdc++ lacks it (see <see cref="SystemLibStdCxxProvides"/>).
        /// The file is replaced through a temporary sibling and rename(2), never written in place.
        /// </summary>
        /// <exception cref="InvalidDataException">The file is not a well-formed ELF64 little-endian object.</exception>
        public static PatchResult PatchFile(string path)
        {
            byte[] original = System.IO.File.ReadAllBytes(path);
            IReadOnlyList<ElfVersionNeed> needs = ReadVersionNeeds(original);

            ElfVersionNeed? target = null;
            var strong = new List<string>();
            foreach (ElfVersionNeed need in needs)
            {
                if (need.Version == IosBaseLibraryInitVersion) target = need;
                if (!need.IsWeak && need.File.StartsWith("libstdc++.so", StringComparison.Ordinal))
                    strong.Add(need.Version);
            }

            var none = new string[0];
            if (target == null) return new PatchResult(PatchOutcome.NotNeeded, none);

            IReadOnlyList<string> missing = MissingFromSystemLibStdCxx(strong, ReadU16(original, 18));
            var others = new List<string>();
            foreach (string version in missing)
                if (version != IosBaseLibraryInitVersion) others.Add(version);

            if (target.IsWeak) return new PatchResult(PatchOutcome.AlreadyWeak, others);
            if (missing.Count == others.Count) return new PatchResult(PatchOutcome.SystemProvides, others);

            byte[] patched = (byte[])original.Clone();
            MarkWeak(patched, IosBaseLibraryInitVersion);
            ReplaceAtomically(path, patched);
            return new PatchResult(PatchOutcome.Patched, others);
        }

        private static void ReplaceAtomically(string path, byte[] contents)
        {
            string fullPath = Path.GetFullPath(path);
            string directory = Path.GetDirectoryName(fullPath) ?? ".";
            string temp = Path.Combine(directory, "." + Path.GetFileName(fullPath) + "." + Guid.NewGuid().ToString("N") + ".tmp");

            // The copy may be a hard link or symlink into the NuGet cache (Copy with
            // UseHardlinksIfPossible/UseSymboliclinksIfPossible), so it must never be opened for
            // writing: a new inode is renamed over the directory entry instead, which also means a
            // reader never sees a half-written library.
            DateTime lastWrite = System.IO.File.GetLastWriteTimeUtc(fullPath);
            try
            {
                // File.Copy carries the mode bits over; WriteAllBytes then truncates and keeps them.
                System.IO.File.Copy(fullPath, temp, overwrite: false);
                using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
                {
                    stream.Write(contents, 0, contents.Length);
                    stream.Flush(flushToDisk: true);
                }

                // Same size and same timestamp as the package file: MSBuild's Copy (SkipUnchangedFiles)
                // then leaves the patched copy alone on incremental builds instead of overwriting it
                // with the original and patching it again. A new package version differs in both.
                System.IO.File.SetLastWriteTimeUtc(temp, lastWrite);

                // On Unix, File.Replace without a backup is a plain rename(2): atomic within a directory.
                System.IO.File.Replace(temp, fullPath, null);
            }
            finally
            {
                if (System.IO.File.Exists(temp)) System.IO.File.Delete(temp);
            }
        }

        private static IEnumerable<string> LdSoConfDirectories()
        {
            const string confDir = "/etc/ld.so.conf.d";
            string[] files;
            try
            {
                if (!Directory.Exists(confDir)) yield break;
                files = Directory.GetFiles(confDir, "*.conf");
            }
            catch (IOException) { yield break; }
            catch (UnauthorizedAccessException) { yield break; }

            Array.Sort(files, StringComparer.Ordinal);
            foreach (string file in files)
            {
                string[] lines;
                try { lines = System.IO.File.ReadAllLines(file); }
                catch (IOException) { continue; }
                catch (UnauthorizedAccessException) { continue; }

                foreach (string raw in lines)
                {
                    int hash = raw.IndexOf('#');
                    string line = (hash >= 0 ? raw.Substring(0, hash) : raw).Trim();
                    // "include" lines nest further globs; the standard paths already cover what matters.
                    if (line.Length == 0 || line[0] != '/') continue;
                    yield return line;
                }
            }
        }

        private static byte[] ReadPrefix(string path, int length)
        {
            using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
            {
                var buffer = new byte[length];
                int total = 0;
                while (total < length)
                {
                    int read = stream.Read(buffer, total, length - total);
                    if (read == 0) break;
                    total += read;
                }

                if (total == length) return buffer;
                var shorter = new byte[total];
                Array.Copy(buffer, shorter, total);
                return shorter;
            }
        }

        private static bool IsElf64LittleEndian(byte[] data)
        {
            return data.Length >= ElfHeaderSize
                && data[0] == 0x7f && data[1] == (byte)'E' && data[2] == (byte)'L' && data[3] == (byte)'F'
                && data[4] == 2 // EI_CLASS = ELFCLASS64
                && data[5] == 1; // EI_DATA = ELFDATA2LSB
        }

        private static void ValidateHeader(byte[] elf)
        {
            if (elf.Length < 4 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
                throw new InvalidDataException("Not an ELF file (bad magic).");
            if (elf.Length < ElfHeaderSize)
                throw new InvalidDataException("Truncated ELF header (" + elf.Length + " bytes).");
            if (elf[4] != 2)
                throw new InvalidDataException("Only ELF64 objects are supported (EI_CLASS = " + elf[4] + ").");
            if (elf[5] != 1)
                throw new InvalidDataException("Only little-endian ELF objects are supported (EI_DATA = " + elf[5] + ").");
        }

        private sealed class Segment
        {
            public uint Type;
            public ulong Offset;
            public ulong VirtualAddress;
            public ulong FileSize;
        }

        private static IEnumerable<Segment> ReadProgramHeaders(byte[] elf)
        {
            ulong phoff = ReadU64(elf, 0x20);
            ushort phentsize = ReadU16(elf, 0x36);
            ushort phnum = ReadU16(elf, 0x38);
            if (phnum == 0) return new Segment[0];
            if (phnum == PnXnum)
                throw new InvalidDataException("ELF objects with more than 65534 program headers are not supported.");
            if (phentsize != ProgramHeaderSize)
                throw new InvalidDataException("Unexpected ELF64 program header size " + phentsize + ".");
            CheckRange(elf, phoff, (ulong)phnum * ProgramHeaderSize, "program header table");

            var segments = new List<Segment>(phnum);
            for (ulong i = 0; i < phnum; i++)
            {
                ulong ph = phoff + i * ProgramHeaderSize;
                var segment = new Segment
                {
                    Type = ReadU32(elf, ph),
                    Offset = ReadU64(elf, ph + 8),
                    VirtualAddress = ReadU64(elf, ph + 16),
                    FileSize = ReadU64(elf, ph + 32),
                };
                if (segment.Type == PtLoad || segment.Type == PtDynamic)
                    CheckRange(elf, segment.Offset, segment.FileSize, segment.Type == PtLoad ? "PT_LOAD segment" : "PT_DYNAMIC segment");
                segments.Add(segment);
            }

            return segments;
        }

        private static ulong MapAddress(List<Segment> loads, ulong address, ulong size, string what)
        {
            foreach (Segment load in loads)
            {
                if (address < load.VirtualAddress) continue;
                ulong delta = address - load.VirtualAddress;
                if (delta < load.FileSize && size <= load.FileSize - delta) return load.Offset + delta;
            }

            throw new InvalidDataException(what + " address 0x" + address.ToString("x") + " is not backed by any PT_LOAD segment.");
        }

        private static string ReadString(byte[] elf, ulong strtab, ulong strsz, uint index)
        {
            if (index >= strsz) throw new InvalidDataException("String index " + index + " is outside the dynamic string table.");
            ulong start = strtab + index;
            ulong end = start;
            ulong limit = strtab + strsz;
            while (true)
            {
                if (end >= limit || end >= (ulong)elf.Length)
                    throw new InvalidDataException("Unterminated string at offset 0x" + start.ToString("x") + ".");
                if (elf[end] == 0) break;
                end++;
            }

            return Encoding.UTF8.GetString(elf, (int)start, (int)(end - start));
        }

        private static void CheckRange(byte[] data, ulong offset, ulong size, string what)
        {
            ulong length = (ulong)data.Length;
            if (offset > length || size > length - offset)
                throw new InvalidDataException("Truncated or malformed ELF: " + what + " at 0x" + offset.ToString("x")
                    + " (+" + size + " bytes) lies outside the " + length + "-byte file.");
        }

        private static ushort ReadU16(byte[] data, ulong offset)
        {
            CheckRange(data, offset, 2, "field");
            int o = (int)offset;
            return (ushort)(data[o] | data[o + 1] << 8);
        }

        private static uint ReadU32(byte[] data, ulong offset)
        {
            CheckRange(data, offset, 4, "field");
            int o = (int)offset;
            return (uint)(data[o] | data[o + 1] << 8 | data[o + 2] << 16 | data[o + 3] << 24);
        }

        private static ulong ReadU64(byte[] data, ulong offset)
        {
            return ReadU32(data, offset) | (ulong)ReadU32(data, offset + 4) << 32;
        }

        private static void WriteU16(byte[] data, ulong offset, ushort value)
        {
            CheckRange(data, offset, 2, "field");
            data[(int)offset] = (byte)value;
            data[(int)offset + 1] = (byte)(value >> 8);
        }
    }

    /// <summary>
    /// MSBuild task: makes each given libLibTorchSharp.so loadable with the system libstdc++ (see the
    /// file header). Never fails the build; problems become warnings.
    /// </summary>
    public sealed class PatchLibTorchSharp : Microsoft.Build.Utilities.Task
    {
        /// <summary>Copies of libLibTorchSharp.so in an output or publish folder. Never the NuGet cache's.</summary>
        [Required]
        public ITaskItem[] Files { get; set; } = new ITaskItem[0];

        public override bool Execute()
        {
            if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux))
            {
                Log.LogMessage(MessageImportance.Low, "ModelDsl: not Linux; libLibTorchSharp.so left as is.");
                return true;
            }

            foreach (ITaskItem item in Files)
            {
                string path = item.ItemSpec;
                if (!System.IO.File.Exists(path)) continue;
                if (IsInNuGetCache(path))
                {
                    // Shared by every project on the machine; only copies are ever patched.
                    Log.LogMessage(MessageImportance.Low, "ModelDsl: {0} is in the NuGet cache; left untouched.", path);
                    continue;
                }

                try
                {
                    PatchResult result = ElfVersionNeedPatcher.PatchFile(path);
                    switch (result.Outcome)
                    {
                        case PatchOutcome.Patched:
                            Log.LogMessage(MessageImportance.Normal,
                                "ModelDsl: patched {0} to load with system libstdc++ ({1} marked weak)",
                                path, ElfVersionNeedPatcher.IosBaseLibraryInitVersion);
                            break;
                        case PatchOutcome.AlreadyWeak:
                            Log.LogMessage(MessageImportance.Low, "ModelDsl: {0} already has {1} marked weak.",
                                path, ElfVersionNeedPatcher.IosBaseLibraryInitVersion);
                            break;
                        case PatchOutcome.SystemProvides:
                            Log.LogMessage(MessageImportance.Low,
                                "ModelDsl: system libstdc++ provides {0}; {1} left untouched.",
                                ElfVersionNeedPatcher.IosBaseLibraryInitVersion, path);
                            break;
                        default:
                            Log.LogMessage(MessageImportance.Low, "ModelDsl: {0} does not need {1}; left untouched.",
                                path, ElfVersionNeedPatcher.IosBaseLibraryInitVersion);
                            break;
                    }

                    if (result.StillMissing.Count > 0)
                    {
                        Log.LogWarning(null, "MD9001", null, path, 0, 0, 0, 0,
                            "ModelDsl: {0} also needs {1}, which the system libstdc++ lacks; it will probably fail to load. "
                            + "Install a newer libstdc++ (GCC 13 or later).",
                            path, string.Join(", ", result.StillMissing));
                    }
                }
                catch (Exception ex)
                {
                    // Whatever goes wrong, the build itself is fine; only loading on an old libstdc++ is at stake.
                    Log.LogWarning(null, "MD9001", null, path, 0, 0, 0, 0,
                        "ModelDsl: could not patch {0} for older libstdc++ ({1}). It may fail to load with "
                        + "\"version `GLIBCXX_3.4.32' not found\". Set ModelDslSkipNativeCompat=true to silence this.",
                        path, ex.Message);
                }
            }

            return true;
        }

        private static bool IsInNuGetCache(string path)
        {
            string full = Path.GetFullPath(path);
            string? configured = Environment.GetEnvironmentVariable("NUGET_PACKAGES");
            string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            foreach (string? root in new[] { configured, string.IsNullOrEmpty(home) ? null : Path.Combine(home, ".nuget", "packages") })
            {
                if (root == null || root.Length == 0) continue;
                string prefix = Path.GetFullPath(root).TrimEnd('/') + "/";
                if (full.StartsWith(prefix, StringComparison.Ordinal)) return true;
            }

            return false;
        }
    }
}
