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

        /// <summary>
        /// Several named inputs, in the order the generated <c>forward</c> takes them, each <c>"name: shape"</c> in the
        /// shape syntax of <see cref="Input"/>, e.g. <c>new[] { "image: B, 1, 8, 8", "meta: B, 4" }</c>. Layers read
        /// one with <c>From = "meta"</c> or a merge naming it; the first layer without <c>From</c> reads the first
        /// input. Instead of <see cref="Input"/>, not beside it. Every input's per-sample sizes are concrete: the
        /// trainer's data rows hold the inputs side by side, in this order (docs/graphs.md).
        /// </summary>
        public string[]? Inputs { get; set; }

        /// <summary>The element type of the input tensor. Use <see cref="DType.Int64"/> for token ids fed to an embedding.</summary>
        public DType InputType { get; set; } = DType.Float32;

        /// <summary>
        /// Graph models: the layer whose output is the model's output, written <c>nameof(Layer)</c>. Default: the last
        /// layer.
        /// </summary>
        public string? Output { get; set; }
    }

    /// <summary>
    /// Goes on a property whose type is a <see cref="ModelAttribute">[Model]</see> class (a composed model): where it
    /// takes its input from and how many independent copies run one after another.
    /// </summary>
    /// <example><c>[Block(Repeat = 3)] public partial ResidualBlock Stage1 { get; }</c></example>
    [AttributeUsage(AttributeTargets.Property, AllowMultiple = false, Inherited = false)]
    public sealed class BlockAttribute : Attribute
    {
        /// <summary>
        /// The number of independent copies (each with its own parameters), run in sequence as PyTorch's
        /// <c>nn.Sequential(*copies)</c>; the state dict names them <c>Stage1.0.…</c>, <c>Stage1.1.…</c>. With more
        /// than one, the block's output shape must equal its input shape. Default 1: the block itself.
        /// </summary>
        public int Repeat { get; set; } = 1;

        /// <summary>As a layer attribute's <c>From</c>: the layer whose output the block takes (<c>"input"</c>: the model input).</summary>
        public string? From { get; set; }
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
