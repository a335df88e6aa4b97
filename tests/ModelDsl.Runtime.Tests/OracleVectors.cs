using System.IO;
using System.Text.Json;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>Reads the committed PyTorch vectors (Oracles/*.json, written by Oracles/gen_pruning_quant.py).</summary>
internal static class OracleVectors
{
    public static JsonElement Load(string file)
    {
        string path = Path.Combine(AppContext.BaseDirectory, "Oracles", file);
        return JsonDocument.Parse(File.ReadAllText(path)).RootElement;
    }

    public static float[] Floats(JsonElement e) => e.EnumerateArray().Select(v => v.GetSingle()).ToArray();

    public static long[] Longs(JsonElement e) => e.EnumerateArray().Select(v => v.GetInt64()).ToArray();

    public static Tensor Tensor(JsonElement values, JsonElement shape) => tensor(Floats(values)).reshape(Longs(shape));

    public static string Id(JsonElement e) => e.GetProperty("id").GetString()!;
}

/// <summary>
/// A module with one parameter <c>weight</c> of any shape, like the oracle script's <c>Holder</c>; its forward
/// reads the field, as TorchSharp layers do.
/// </summary>
internal sealed class Holder : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // the field name is the parameter name, as in PyTorch
    private Tensor weight;
#pragma warning restore IDE1006

    public Holder(Tensor w) : base(nameof(Holder))
    {
        weight = new Parameter(w.clone());
        RegisterComponents();
    }

    public Tensor Weight => weight;

    public override Tensor forward(Tensor input) => input * weight;
}

/// <summary>
/// Tests that seed torch's global generator and rely on what it draws next (random pruning masks against PyTorch's,
/// two models built from one seed, the random stream left as it was). xUnit runs test classes in parallel, and any
/// other test drawing random numbers in between would change the draws, so this collection runs on its own.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TorchGlobalRandom
{
    public const string Name = "Torch global random generator";
}
