using System;

#if MODELDSL_GENERATOR
// Compiled into the generator too (its parsers read the properties by nameof), under its own namespace: the generator
// tests reference both assemblies.
namespace ModelDsl.Generators.Dsl
#else
namespace ModelDsl
#endif
{
    /// <summary>
    /// Declares a <c>partial class</c> as a neural-network model. The ModelDsl generator turns the class into a
    /// TorchSharp <c>Module&lt;Tensor, Tensor&gt;</c> whose layers are the class's annotated partial properties, in
    /// declaration order, and checks every shape at compile time.
    /// </summary>
    /// <example>
    /// <code>
    /// [Model(Input = "B, 64")]
    /// public partial class DigitsMlp
    /// {
    ///     [Linear(128)] public partial Linear Hidden { get; }
    ///     [ReLU]        public partial ReLU Act { get; }
    ///     [Linear(10)]  public partial Linear Output { get; }
    /// }
    /// </code>
    /// </example>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
    public sealed class ModelAttribute : Attribute
    {
        /// <summary>
        /// The input shape, as comma-separated dimensions: integers for concrete sizes and identifiers for symbolic
        /// ones, e.g. <c>"B, 64"</c>, <c>"B, 1, 8, 8"</c> or <c>"B, T"</c>. The first dimension is the batch.
        /// Sizes of later layers are inferred from it.
        /// </summary>
        public string Input { get; set; } = "";

        /// <summary>The element type of the input tensor. Use <see cref="DType.Int64"/> for token ids fed to an embedding.</summary>
        public DType InputType { get; set; } = DType.Float32;
    }

    /// <summary>Element types of model inputs, named as in PyTorch.</summary>
    public enum DType
    {
        /// <summary><c>torch.float32</c>, the default.</summary>
        Float32 = 0,
        /// <summary><c>torch.float64</c>.</summary>
        Float64 = 1,
        /// <summary><c>torch.float16</c>.</summary>
        Float16 = 2,
        /// <summary><c>torch.int32</c>.</summary>
        Int32 = 3,
        /// <summary><c>torch.int64</c>, the type of token ids and class labels.</summary>
        Int64 = 4,
    }
}
