using System.Globalization;

// Linked into the runtime (public: the Prune API and PrunePass take it) and the generator (internal: the optimisation
// parser rounds a fraction to a count with it), so PyTorch's amount rules are written once.
namespace ModelDsl.Runtime.Pruning
{
    /// <summary>
    /// How much to prune: a count (Python <c>int</c>) or a fraction (Python <c>float</c>), validated and converted
    /// exactly as <c>torch.nn.utils.prune</c> does (<c>_validate_pruning_amount_init</c>,
    /// <c>_compute_nparams_toprune</c>, <c>_validate_pruning_amount</c>).
    /// </summary>
#if MODELDSL_GENERATOR
    internal
#else
    public
#endif
    readonly struct PruneAmount : IEquatable<PruneAmount>
    {
        private PruneAmount(bool isCount, long count, double fraction)
        {
            IsCount = isCount;
            Count = count;
            Fraction = fraction;
        }

        /// <summary>Whether the amount is a count of entries (or channels) rather than a fraction.</summary>
        public bool IsCount { get; }

        /// <summary>The count, when <see cref="IsCount"/>; 0 otherwise.</summary>
        public long Count { get; }

        /// <summary>The fraction in [0, 1], when not <see cref="IsCount"/>; 0 otherwise.</summary>
        public double Fraction { get; }

        /// <summary>A fraction in [0, 1]; NaN is rejected too (Python would fail later, converting NaN to an int).</summary>
        /// <param name="fraction">The fraction of the entries (or channels) still alive to prune.</param>
        /// <exception cref="ArgumentException">The fraction is outside [0, 1] or NaN.</exception>
        public static PruneAmount Of(double fraction)
        {
            if (double.IsNaN(fraction) || fraction < 0 || fraction > 1)
                throw new ArgumentException($"amount={PyFloat(fraction)} should either be a float in the range [0, 1] or a non-negative integer");
            return new PruneAmount(false, 0, fraction);
        }

        /// <summary>A non-negative count.</summary>
        /// <param name="count">How many of the entries (or channels) still alive to prune.</param>
        /// <exception cref="ArgumentException">The count is negative.</exception>
        public static PruneAmount Of(long count)
        {
            if (count < 0)
                throw new ArgumentException($"amount={count} should either be a float in the range [0, 1] or a non-negative integer");
            return new PruneAmount(true, count, 0);
        }

        /// <summary>A fraction, as Python's <c>float</c> amount: <c>Prune.L1Unstructured(fc, "weight", 0.4)</c>.</summary>
        /// <param name="fraction">The fraction of the entries (or channels) still alive to prune, in [0, 1].</param>
        /// <exception cref="ArgumentException">The fraction is outside [0, 1] or NaN.</exception>
        public static implicit operator PruneAmount(double fraction) => Of(fraction);

        /// <summary>A count, as Python's <c>int</c> amount: <c>Prune.L1Unstructured(fc, "weight", 3)</c>.</summary>
        /// <param name="count">How many of the entries (or channels) still alive to prune.</param>
        /// <exception cref="ArgumentException">The count is negative.</exception>
        public static implicit operator PruneAmount(long count) => Of(count);

        /// <summary>
        /// The number of entries (or channels) to prune out of <paramref name="size"/>: the count itself, or Python's
        /// <c>round(amount * size)</c>, which rounds half to even on the double product (0.25 × 10 → 2, 0.35 × 10 → 4).
        /// Not checked against <paramref name="size"/>; <see cref="ToPrune"/> is.
        /// </summary>
        /// <param name="size">How many entries (or channels) there are.</param>
        public long NumberOf(long size) => IsCount ? Count : (long)Math.Round(Fraction * size, MidpointRounding.ToEven);

        /// <summary>
        /// <see cref="NumberOf"/>, checked: a count larger than <paramref name="size"/> is an error; equal is allowed.
        /// </summary>
        /// <param name="size">How many entries (or channels) there are.</param>
        /// <exception cref="ArgumentException">The count exceeds <paramref name="size"/>.</exception>
        public long ToPrune(long size)
        {
            long k = NumberOf(size);
            if (k > size)
                throw new ArgumentException($"amount={k} should be smaller than the number of parameters to prune={size}");
            return k;
        }

        /// <inheritdoc/>
        public bool Equals(PruneAmount other) => IsCount == other.IsCount && Count == other.Count && Fraction.Equals(other.Fraction);

        /// <inheritdoc/>
        public override bool Equals(object? obj) => obj is PruneAmount other && Equals(other);

        /// <inheritdoc/>
        public override int GetHashCode() => (IsCount ? Count.GetHashCode() : Fraction.GetHashCode()) * 2 + (IsCount ? 1 : 0);

        /// <summary>The amount as Python writes it: <c>3</c> for a count, <c>0.5</c> (or <c>1.0</c>) for a fraction.</summary>
        public override string ToString() => IsCount ? Count.ToString(CultureInfo.InvariantCulture) : PyFloat(Fraction);

        /// <summary>Python's <c>repr(float)</c>: shortest round-trip digits, <c>1.0</c> not <c>1</c>, <c>nan</c>, <c>inf</c>.</summary>
        internal static string PyFloat(double value)
        {
            if (double.IsNaN(value)) return "nan";
            if (double.IsPositiveInfinity(value)) return "inf";
            if (double.IsNegativeInfinity(value)) return "-inf";
            string text = value.ToString("R", CultureInfo.InvariantCulture);
            return text.IndexOf('.') >= 0 || text.IndexOf('E') >= 0 ? text : text + ".0";
        }
    }
}
