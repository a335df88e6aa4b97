using System;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// DiLoCo's outer optimiser (Douillard et al. 2023, arXiv:2311.08105): Nesterov-momentum SGD applied to the outer
/// gradient <c>Δ = θ_prev − mean θ_i</c>, the replicas' mean progress since the last round. With PyTorch's SGD
/// (<c>nesterov=True</c>, no dampening): <c>buf = m·buf + Δ</c> (the first round <c>buf = Δ</c>), then
/// <c>θ ← θ_prev − lr·(Δ + m·buf)</c>. Learning rate 1 and momentum 0 is plain averaging.
/// </summary>
public sealed class OuterNesterov : IDisposable
{
    private Tensor? _buffer;

    /// <summary>Outer learning rate <paramref name="learningRate"/> &gt; 0 and momentum <paramref name="momentum"/> in [0, 1).</summary>
    public OuterNesterov(double learningRate, double momentum)
    {
        if (!ModelDsl.Plans.PlanRules.OuterLearningRate.Holds(learningRate))
            throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "The outer learning rate must be a positive number.");
        if (!ModelDsl.Plans.PlanRules.OuterMomentum.Holds(momentum))
            throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "The outer momentum must be in [0, 1).");
        LearningRate = learningRate;
        Momentum = momentum;
    }

    /// <summary>The outer learning rate (DiLoCo: 0.7).</summary>
    public double LearningRate { get; }

    /// <summary>The outer momentum (DiLoCo: 0.9).</summary>
    public double Momentum { get; }

    /// <summary>The momentum buffer, null before the first round.</summary>
    public Tensor? Buffer => _buffer;

    /// <summary>
    /// One outer step: <paramref name="previous"/> (θ_prev, the parameters every replica started the round from)
    /// becomes the new global parameters, in place, from <paramref name="average"/> (the replicas' mean).
    /// </summary>
    public void Step(Tensor previous, Tensor average)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var delta = previous - average;
        if (_buffer is null) _buffer = delta.clone().DetachFromDisposeScope();
        else _buffer.mul_(Momentum).add_(delta);
        previous.sub_(delta.add_(_buffer, alpha: Momentum).mul_(LearningRate));
    }

    /// <summary>The momentum buffer as float32 bytes (null before the first round), for a checkpoint.</summary>
    public byte[]? SaveBuffer()
    {
        if (_buffer is null) return null;
        using var scope = NewDisposeScope();
        float[] values = _buffer.to_type(ScalarType.Float32).cpu().data<float>().ToArray();
        return System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
    }

    /// <summary>Takes back a buffer <see cref="SaveBuffer"/> gave, for <paramref name="elements"/> parameters on <paramref name="device"/>.</summary>
    /// <exception cref="ArgumentException">The bytes do not hold <paramref name="elements"/> float32 values.</exception>
    public void RestoreBuffer(byte[] bytes, long elements, Device device)
    {
        if (bytes.Length != elements * sizeof(float))
            throw new ArgumentException($"the outer momentum holds {bytes.Length / sizeof(float)} values, but the model has {elements} parameters", nameof(bytes));
        Reset();
        var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray();
        using var scope = NewDisposeScope();
        _buffer = tensor(values).to(device).DetachFromDisposeScope();
    }

    /// <summary>Forgets the momentum (a new model, or fine-tuning after pruning).</summary>
    public void Reset()
    {
        _buffer?.Dispose();
        _buffer = null;
    }

    /// <inheritdoc/>
    public void Dispose() => Reset();
}
