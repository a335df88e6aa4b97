using System.Globalization;

namespace ModelDsl;

/// <summary>
/// What the runtime's sequences of layers (<see cref="Layers.Repeated"/>, <see cref="TransformerBlock"/>) share: their
/// layers are sub-modules named <c>0</c> … <c>n−1</c> (<c>nn.Sequential</c>'s state-dict names) and run one after
/// another, each kept to its input and run again in backward when the block recomputes.
/// </summary>
internal static class NumberedLayers
{
    /// <summary>The names <c>0</c> … <c>count−1</c>.</summary>
    public static string[] Names(long count) =>
        Enumerable.Range(0, checked((int)count)).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToArray();

    /// <summary>Runs <paramref name="layers"/> in sequence (<see cref="Runtime.Training.BlockRecompute"/> each when <paramref name="recompute"/>).</summary>
    public static Tensor Run(IEnumerable<nn.Module<Tensor, Tensor>> layers, Tensor input, bool recompute)
    {
        var x = input;
        foreach (var layer in layers) x = recompute ? Runtime.Training.BlockRecompute.Run(layer, x) : layer.call(x);
        return x;
    }

    /// <summary>
    /// The index of the layer <paramref name="name"/> among <paramref name="names"/>; otherwise an
    /// <see cref="ArgumentException"/>: <c>'name' is not {notOne}; its {plural} are 0, 1, …</c>.
    /// </summary>
    public static int Index(string name, IReadOnlyList<string> names, string notOne, string plural) =>
        int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out int i) && i < names.Count
            ? i
            : throw new ArgumentException($"'{name}' is not {notOne}; its {plural} are {string.Join(", ", names)}", nameof(name));
}
