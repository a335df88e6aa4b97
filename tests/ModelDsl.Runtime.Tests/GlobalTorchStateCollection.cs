namespace ModelDsl.Runtime.Tests;

/// <summary>
/// Test classes that build models (drawing from libtorch's global generator) and run apart from all others:
/// CheckpointTests compares the global RNG state before and after a save, which a model built at the same time
/// by a parallel test would change.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class GlobalTorchStateCollection
{
    public const string Name = "Global torch state";
}
