using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace ModelDsl.Runtime.Training.MixedPrecision
{
    /// <summary>
    /// The CPU's instruction-set flags, as Linux lists them in <c>/proc/cpuinfo</c>, for the one question mixed
    /// precision asks: does oneDNN have fast bfloat16 matrix kernels here? It has them with AVX-512 BF16
    /// (<c>avx512_bf16</c>, Cooper Lake, Zen 4 and later) or AMX (<c>amx_bf16</c>, Sapphire Rapids); on an AVX2-only CPU
    /// it converts to float32 and back around every product, which is slower than float32 throughout. .NET has no
    /// intrinsic class for either flag, hence the file. Tests build one from a flag list.
    /// </summary>
    public sealed class CpuFeatures
    {
        private readonly HashSet<string> _flags;

        /// <summary>A CPU with these flags (space-separated, <c>/proc/cpuinfo</c>'s spelling).</summary>
        public CpuFeatures(string flags, string model = "")
        {
            _flags = new HashSet<string>(flags.Split(' ', StringSplitOptions.RemoveEmptyEntries), StringComparer.Ordinal);
            Model = model;
        }

        /// <summary>This machine's CPU (no flags where <c>/proc/cpuinfo</c> cannot be read: not Linux).</summary>
        public static CpuFeatures Current { get; } = Read("/proc/cpuinfo");

        /// <summary>The CPU's model name, or "" when unknown.</summary>
        public string Model { get; }

        /// <summary>Whether oneDNN runs bfloat16 matrix products natively here (AVX-512 BF16 or AMX).</summary>
        public bool HasBFloat16MatrixProducts => _flags.Contains("avx512_bf16") || _flags.Contains("amx_bf16");

        /// <summary>The flags that make bfloat16 fast, among this CPU's (for the report and the warning).</summary>
        public string BFloat16Flags => string.Join(" ", new[] { "avx512_bf16", "amx_bf16" }.Where(_flags.Contains));

        private static CpuFeatures Read(string path)
        {
            try
            {
                var lines = File.ReadLines(path).Take(64).ToArray();
                string Field(string name) => lines.FirstOrDefault(l => l.StartsWith(name, StringComparison.Ordinal)) is { } line
                    ? line[(line.IndexOf(':') + 1)..].Trim() : "";
                return new CpuFeatures(Field("flags"), Field("model name"));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return new CpuFeatures("");
            }
        }
    }
}
