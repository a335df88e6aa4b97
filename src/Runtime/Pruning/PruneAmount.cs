using System;
using System.Globalization;

namespace ModelDsl.Runtime.Pruning;

/// <summary>
/// How much to prune: a count (Python <c>int</c>) or a fraction (Python <c>float</c>), validated and converted
/// exactly as <c>torch.nn.utils.prune</c> does (<c>_validate_pruning_amount_init</c>,
/// <c>_compute_nparams_toprune</c>, <c>_validate_pruning_amount</c>).
/// </summary>
internal readonly struct PruneAmount
{
    private PruneAmount(bool isCount, long count, double fraction)
    {
        IsCount = isCount;
        Count = count;
        Fraction = fraction;
    }

    public bool IsCount { get; }
    public long Count { get; }
    public double Fraction { get; }

    /// <summary>A fraction in [0, 1]; NaN is rejected too (Python would fail later, converting NaN to an int).</summary>
    public static PruneAmount Of(double fraction)
    {
        if (double.IsNaN(fraction) || fraction < 0 || fraction > 1)
            throw new ArgumentException($"amount={PyFloat(fraction)} should either be a float in the range [0, 1] or a non-negative integer");
        return new PruneAmount(false, 0, fraction);
    }

    /// <summary>A non-negative count.</summary>
    public static PruneAmount Of(long count)
    {
        if (count < 0)
            throw new ArgumentException($"amount={count} should either be a float in the range [0, 1] or a non-negative integer");
        return new PruneAmount(true, count, 0);
    }

    /// <summary>
    /// The number of entries (or channels) to prune out of <paramref name="size"/>: the count itself, or Python's
    /// <c>round(amount * size)</c>, which rounds half to even on the double product (0.25 × 10 → 2, 0.35 × 10 → 4).
    /// A count larger than <paramref name="size"/> is an error; equal is allowed.
    /// </summary>
    public long ToPrune(long size)
    {
        long k = IsCount ? Count : (long)Math.Round(Fraction * size, MidpointRounding.ToEven);
        if (k > size)
            throw new ArgumentException($"amount={k} should be smaller than the number of parameters to prune={size}");
        return k;
    }

    public override string ToString() => IsCount ? Count.ToString(CultureInfo.InvariantCulture) : PyFloat(Fraction);

    /// <summary>Python's <c>repr(float)</c>: shortest round-trip digits, <c>1.0</c> not <c>1</c>, <c>nan</c>, <c>inf</c>.</summary>
    internal static string PyFloat(double value)
    {
        if (double.IsNaN(value)) return "nan";
        if (double.IsPositiveInfinity(value)) return "inf";
        if (double.IsNegativeInfinity(value)) return "-inf";
        string text = value.ToString("R", CultureInfo.InvariantCulture);
        return text.Contains('.') || text.Contains('E') ? text : text + ".0";
    }
}
