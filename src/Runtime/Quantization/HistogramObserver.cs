namespace ModelDsl.Runtime.Quantization;

/// <summary>
/// PyTorch 1.13's <c>torch.ao.quantization.HistogramObserver</c> for quint8 activations, per-tensor affine, with
/// <c>reduce_range</c> (the quantised range [0, 127]: <c>get_default_qconfig("x86")</c>): a running 2048-bin histogram of
/// everything it sees, then a search for the range that minimises the L2 quantisation error, then the scale and zero
/// point of that range (docs/optimization.md, "Static int8").
/// </summary>
/// <remarks>
/// Ported operation by operation, on libtorch's own kernels where PyTorch uses tensors (histc, cumsum, the error of a
/// candidate range) and in float32 / double where PyTorch computes on 0-dim tensors / Python floats, so the same inputs
/// give the same bits. PyTorch's quirks are kept on purpose, because they decide the result: the histogram of a new batch
/// is taken over <c>[int(min), int(max)]</c> (the bounds truncated to integers), and two histograms over different
/// ranges are combined by upsampling 128×.
/// </remarks>
internal sealed class HistogramObserver : IDisposable
{
    private const int Bins = 2048;
    private const int UpsampleRate = 128;
    /// <summary><c>2 ** torch.iinfo(quint8).bits</c>: the search's destination bins (not reduced by reduce_range).</summary>
    private const int DestinationBins = 256;
    /// <summary>reduce_range: quint8 limited to [0, 127].</summary>
    public const int QuantMin = 0, QuantMax = 127;

    private Tensor _histogram = zeros(Bins);
    private float _min = float.PositiveInfinity, _max = float.NegativeInfinity;
    private (float Scale, int ZeroPoint)? _qparams;

    /// <summary>Whether it has seen any value.</summary>
    public bool HasObserved => !(float.IsPositiveInfinity(_min) && float.IsNegativeInfinity(_max));

    /// <summary>The smallest and largest value seen (<c>min_val</c>, <c>max_val</c>).</summary>
    public (float Min, float Max) Range => (_min, _max);

    /// <summary><c>forward</c>: adds <paramref name="input"/>'s values to the histogram (float32 expected).</summary>
    public void Observe(Tensor input)
    {
        if (input.numel() == 0) return;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        _qparams = null;
        var x = input.detach().to(ScalarType.Float32);
        var (minT, maxT) = x.aminmax();
        float newMin = minT.item<float>(), newMax = maxT.item<float>();
        if (!HasObserved || _min == _max)
        {
            _min = newMin;
            _max = newMax;
            Replace(x.histc(Bins, Truncate(_min), Truncate(_max)));
            return;
        }

        float combinedMin = MathF.Min(newMin, _min);
        float combinedMax = MathF.Max(newMax, _max);
        // _adjust_min_max: a common grid of resolution (max - min) / (bins · upsample_rate), the max relaxed to fit it.
        float histBinWidth = (_max - _min) / (Bins * UpsampleRate);
        int downsampleRate = (int)MathF.Ceiling((combinedMax - combinedMin) / (Bins * histBinWidth));
        float e = downsampleRate * (Bins * histBinWidth) - (combinedMax - combinedMin);
        combinedMax += e;
        int startIndex = (int)MathF.Round((_min - combinedMin) / histBinWidth, MidpointRounding.ToEven);

        var combined = x.histc(Bins, Truncate(combinedMin), Truncate(combinedMax));
        if (combinedMin == _min && combinedMax == _max)
            combined = combined + _histogram;
        else
            combined = Combine(combined, _histogram, downsampleRate, startIndex);
        Replace(combined);
        _min = combinedMin;
        _max = combinedMax;
    }

    /// <summary>Python's <c>int(tensor)</c> of a float: truncated toward zero (as PyTorch passes the histc bounds).</summary>
    private static long Truncate(float value) => (long)Math.Truncate((double)value);

    private void Replace(Tensor histogram)
    {
        var old = _histogram;
        _histogram = histogram.detach().clone().DetachFromDisposeScope();
        old.Dispose();
    }

    /// <summary><c>_combine_histograms</c>: the old histogram upsampled, placed on the combined grid, integrated in double and resampled.</summary>
    private static Tensor Combine(Tensor combined, Tensor old, int downsampleRate, int startIndex)
    {
        var upsampled = old.repeat_interleave(UpsampleRate);
        var withRange = zeros(Bins * (long)downsampleRate);
        withRange[TensorIndex.Slice(startIndex, Bins * (long)UpsampleRate + startIndex)] = upsampled;
        var integral = withRange.cumsum(0, ScalarType.Float64)[TensorIndex.Slice(downsampleRate - 1, null, downsampleRate)];
        var shifted = zeros(Bins);
        shifted[TensorIndex.Slice(1, Bins)] = integral[TensorIndex.Slice(0, -1)];
        var interpolated = (integral - shifted) / UpsampleRate;
        return combined + interpolated.to(ScalarType.Float32);
    }

    /// <summary>
    /// <c>calculate_qparams</c>: the searched range's scale (float32) and zero point in [0, 127]; (1, 0) when nothing
    /// was observed (PyTorch warns and returns the same).
    /// </summary>
    public (float Scale, int ZeroPoint) QParams()
    {
        if (_qparams is { } cached) return cached;
        if (!HasObserved) return (1f, 0);
        var (min, max) = SearchRange();
        return (_qparams = AffineQParams(min, max)).Value;
    }

    /// <summary><c>_calculate_qparams</c> for per-tensor affine quint8 with reduce_range, in float32 as PyTorch's 0-dim tensors.</summary>
    internal static (float Scale, int ZeroPoint) AffineQParams(float min, float max)
    {
        float minNeg = MathF.Min(min, 0f), maxPos = MathF.Max(max, 0f);
        float scale = (maxPos - minNeg) / (float)(QuantMax - QuantMin);
        scale = MathF.Max(scale, QuantizationRules.WeightScaleFloor);
        int zeroPoint = QuantMin - (int)MathF.Round(minNeg / scale, MidpointRounding.ToEven);
        return (scale, Math.Clamp(zeroPoint, QuantMin, QuantMax));
    }

    /// <summary>
    /// <c>_non_linear_param_search</c>: moves the range's ends in from the histogram's, 1e-5 of the mass at a time, while
    /// the L2 quantisation error keeps falling. Returns the new (min, max).
    /// </summary>
    internal (float Min, float Max) SearchRange()
    {
        using var scope = NewDisposeScope();
        float binWidth = (_max - _min) / Bins;
        // total is a Python float; cSum[l] < next_alpha * total compares in float32 (the tensor's dtype).
        double total = _histogram.sum().item<float>();
        float[] cSum = _histogram.cumsum(0).data<float>().ToArray();

        const double stepSize = 1e-5;
        double alpha = 0.0, beta = 1.0;
        int startBin = 0, endBin = Bins - 1;
        double normMin = double.PositiveInfinity;
        while (alpha < beta)
        {
            double nextAlpha = alpha + stepSize;
            double nextBeta = beta - stepSize;
            int l = startBin, r = endBin;
            while (l < endBin && cSum[l] < (float)(nextAlpha * total)) l++;
            while (r > startBin && cSum[r] > (float)(nextBeta * total)) r--;

            int nextStart = startBin, nextEnd = endBin;
            if (l - startBin > endBin - r)
            {
                nextStart = l;
                alpha = nextAlpha;
            }
            else
            {
                nextEnd = r;
                beta = nextBeta;
            }
            if (nextStart == startBin && nextEnd == endBin) continue;

            double norm = QuantizationError(nextStart, nextEnd);
            if (norm > normMin) break;
            normMin = norm;
            startBin = nextStart;
            endBin = nextEnd;
        }
        return (_min + binWidth * startBin, _min + binWidth * (endBin + 1));
    }

    /// <summary><c>_compute_quantization_error</c>: the L2 error of quantising the histogram's mass to 256 bins over [start, end].</summary>
    private double QuantizationError(int nextStart, int nextEnd)
    {
        using var scope = NewDisposeScope();
        double binWidth = ((double)_max - _min) / Bins;
        double dstBinWidth = binWidth * (nextEnd - nextStart + 1) / DestinationBins;
        if (dstBinWidth == 0.0) return 0.0;

        var srcBin = arange(Bins, ScalarType.Int64);
        var srcBinBegin = (srcBin - nextStart) * binWidth;
        var srcBinEnd = srcBinBegin + binWidth;
        var dstBinOfBegin = srcBinBegin.div(dstBinWidth, RoundingMode.floor).clamp(0, DestinationBins - 1);
        var dstBinOfBeginCenter = (dstBinOfBegin + 0.5) * dstBinWidth;
        var dstBinOfEnd = srcBinEnd.div(dstBinWidth, RoundingMode.floor).clamp(0, DestinationBins - 1);
        var density = _histogram / binWidth;

        var norm = zeros(Bins);
        var deltaBegin = srcBinBegin - dstBinOfBeginCenter;
        double deltaEnd = dstBinWidth / 2;
        norm += Norm(deltaBegin, ones(Bins) * deltaEnd, density);
        norm += (dstBinOfEnd - dstBinOfBegin - 1) * Norm(tensor((float)(-dstBinWidth / 2)), tensor((float)(dstBinWidth / 2)), density);
        var dstBinOfEndCenter = dstBinOfEnd * dstBinWidth + dstBinWidth / 2;
        norm += Norm(tensor((float)(-dstBinWidth / 2)), srcBinEnd - dstBinOfEndCenter, density);
        return norm.sum().item<float>();
    }

    /// <summary><c>_get_norm</c>: density · (end³ − begin³) / 3.</summary>
    private static Tensor Norm(Tensor begin, Tensor end, Tensor density) =>
        density * ((end * end * end - begin * begin * begin) / 3);

    public void Dispose() => _histogram.Dispose();
}
