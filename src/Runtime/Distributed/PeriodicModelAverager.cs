using System;

namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// When local SGD averages, after PyTorch's <c>PeriodicModelAverager(period, warmup_steps)</c>
/// (torch/distributed/algorithms/model_averaging/averagers.py): a step counter from 0, advanced once per optimiser
/// step; the step averages when <c>step ≥ warmup</c> and <c>(step − warmup) % period == 0</c>. With warm-up 2 and
/// period 3 the averaging steps are 2, 5, 8, …
/// </summary>
/// <remarks>
/// Steps before <see cref="WarmupSteps"/> are synchronous DDP steps (post-local SGD: gradients are all-reduced, so
/// the replicas stay identical and nothing needs averaging); the first local step averages at once.
/// </remarks>
public sealed class PeriodicModelAverager
{
    /// <summary>Averages every <paramref name="period"/> steps after <paramref name="warmupSteps"/> synchronous ones.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="period"/> &lt; 1 or <paramref name="warmupSteps"/> &lt; 0 (PyTorch's errors).</exception>
    public PeriodicModelAverager(int period, int warmupSteps = 0)
    {
        if (!ModelDsl.Plans.PlanRules.SyncEvery.Holds(period)) throw new ArgumentOutOfRangeException(nameof(period), period, "Arg ``period`` must be a positive value.");
        if (!ModelDsl.Plans.PlanRules.WarmupSteps.Holds(warmupSteps)) throw new ArgumentOutOfRangeException(nameof(warmupSteps), warmupSteps, "Arg ``warmup_steps`` must be a non-negative number.");
        Period = period;
        WarmupSteps = warmupSteps;
    }

    /// <summary>Optimiser steps between averaging rounds.</summary>
    public int Period { get; }

    /// <summary>Synchronous steps before the first round.</summary>
    public int WarmupSteps { get; }

    /// <summary>The 0-based index of the next optimiser step (PyTorch's <c>averager.step</c>); set it when resuming.</summary>
    public long Step { get; set; }

    /// <summary>Whether the 0-based step <paramref name="step"/> is a synchronous (warm-up) step.</summary>
    public bool IsWarmup(long step) => step < WarmupSteps;

    /// <summary>Whether the 0-based step <paramref name="step"/> ends with an averaging round.</summary>
    public bool AveragesAt(long step) => step >= WarmupSteps && (step - WarmupSteps) % Period == 0;

    /// <summary>After an optimiser step: whether it averages, then advances the counter (<c>average_parameters</c>).</summary>
    public bool Advance() => AveragesAt(Step++);
}
