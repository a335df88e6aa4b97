// Layer attributes. Argument order follows PyTorch: with the input size omitted they read like PyTorch's lazy
// modules (LazyLinear(out), LazyConv2d(out, kernel)); with it given, like the ordinary ones (Linear(in, out)).
// An omitted size is inferred from the previous layer's output shape; an explicit one is checked against it.
namespace ModelDsl
{
    /// <summary>
    /// <c>torch.nn.Linear</c>: <c>y = x Wᵀ + b</c> over the last dimension, <c>(*, in) → (*, out)</c>.
    /// Goes on a property of type <c>TorchSharp.Modules.Linear</c>.
    /// </summary>
    public sealed class LinearAttribute : LayerAttribute
    {
        /// <summary>A linear layer whose input size is inferred from the previous layer (like <c>LazyLinear(out)</c>).</summary>
        /// <param name="outFeatures">Size of each output sample.</param>
        public LinearAttribute(int outFeatures) { OutFeatures = outFeatures; }

        /// <summary>A linear layer with an explicit input size, checked against the inferred one.</summary>
        /// <param name="inFeatures">Size of each input sample.</param>
        /// <param name="outFeatures">Size of each output sample.</param>
        public LinearAttribute(int inFeatures, int outFeatures) { InFeatures = inFeatures; OutFeatures = outFeatures; }

        /// <summary>Size of each input sample; <c>-1</c> when inferred.</summary>
        public int InFeatures { get; } = -1;
        /// <summary>Size of each output sample.</summary>
        public int OutFeatures { get; }
        /// <summary>Whether the layer learns an additive bias. Default <c>true</c>.</summary>
        public bool Bias { get; set; } = true;
        /// <summary>
        /// Weight tying (GPT-2's output head): the name of an <see cref="EmbeddingAttribute">[Embedding]</see> layer of
        /// the same model, written <c>nameof(Emb)</c>, whose <c>(num, dim)</c> table this layer uses as its weight
        /// (<c>head.weight = emb.weight</c> in PyTorch). Out-features must equal the embedding's count and in-features
        /// its dimension; the shared weight is one parameter, counted once. Default: not tied.
        /// </summary>
        public string? TiedTo { get; set; }
    }

    /// <summary>Shared settings of the convolution attributes (PyTorch defaults).</summary>
    public abstract class ConvAttribute : LayerAttribute
    {
        /// <summary>Creates a convolution; <paramref name="inChannels"/> is <c>-1</c> when inferred.</summary>
        private protected ConvAttribute(int inChannels, int outChannels, int kernelSize)
        {
            InChannels = inChannels; OutChannels = outChannels; KernelSize = kernelSize;
        }

        /// <summary>Number of input channels; <c>-1</c> when inferred.</summary>
        public int InChannels { get; }
        /// <summary>Number of output channels.</summary>
        public int OutChannels { get; }
        /// <summary>Size of the kernel (its height when a 2-D kernel is not square).</summary>
        public int KernelSize { get; }
        /// <summary>Stride of the convolution. Default 1.</summary>
        public int Stride { get; set; } = 1;
        /// <summary>Zero padding added to both sides of each spatial dimension. Default 0.</summary>
        public int Padding { get; set; }
        /// <summary>Spacing between kernel elements. Default 1.</summary>
        public int Dilation { get; set; } = 1;
        /// <summary>Number of blocked connections from input to output channels; must divide both. Default 1.</summary>
        public int Groups { get; set; } = 1;
        /// <summary>Whether the layer learns an additive bias. Default <c>true</c>.</summary>
        public bool Bias { get; set; } = true;
    }

    /// <summary>
    /// <c>torch.nn.Conv1d</c> over <c>(B, C, L)</c> inputs. Goes on a property of type <c>TorchSharp.Modules.Conv1d</c>.
    /// </summary>
    public sealed class Conv1dAttribute : ConvAttribute
    {
        /// <summary>Input channels inferred (like <c>LazyConv1d(out, kernel)</c>).</summary>
        public Conv1dAttribute(int outChannels, int kernelSize) : base(-1, outChannels, kernelSize) { }
        /// <summary>Explicit input channels, checked against the inferred ones.</summary>
        public Conv1dAttribute(int inChannels, int outChannels, int kernelSize) : base(inChannels, outChannels, kernelSize) { }
    }

    // 2-D layers take PyTorch's (height, width) pairs the way attributes can: a kernel as an array in the kernel's
    // position, Conv2d(1, 16, (3, 5)) → [Conv2d(1, 16, new[] { 3, 5 })]; a stride, padding or dilation per axis with
    // the H and W properties, stride=(1, 2) → StrideH = 1, StrideW = 2. The plain property sets both axes and an
    // axis property overrides it for its axis. (Attribute arguments cannot be tuples.)

    /// <summary>
    /// <c>torch.nn.Conv2d</c> over <c>(B, C, H, W)</c> inputs. Goes on a property of type <c>TorchSharp.Modules.Conv2d</c>.
    /// A square kernel is one number, <c>[Conv2d(16, 3)]</c>; a rectangular one is (height, width) as an array,
    /// <c>[Conv2d(16, new[] { 3, 5 })]</c>, like PyTorch's <c>kernel_size=(3, 5)</c>.
    /// </summary>
    public sealed class Conv2dAttribute : ConvAttribute
    {
        /// <summary>Input channels inferred (like <c>LazyConv2d(out, kernel)</c>), square kernel.</summary>
        public Conv2dAttribute(int outChannels, int kernelSize) : base(-1, outChannels, kernelSize) { KernelHeight = KernelWidth = kernelSize; }
        /// <summary>Explicit input channels, checked against the inferred ones; square kernel.</summary>
        public Conv2dAttribute(int inChannels, int outChannels, int kernelSize) : base(inChannels, outChannels, kernelSize) { KernelHeight = KernelWidth = kernelSize; }
        /// <summary>Input channels inferred; a (height, width) kernel, e.g. <c>new[] { 3, 5 }</c>.</summary>
        public Conv2dAttribute(int outChannels, int[] kernelSize) : this(-1, outChannels, kernelSize) { }
        /// <summary>Explicit input channels; a (height, width) kernel, e.g. <c>new[] { 3, 5 }</c>.</summary>
        public Conv2dAttribute(int inChannels, int outChannels, int[] kernelSize) : base(inChannels, outChannels, Height(kernelSize))
        {
            KernelHeight = Height(kernelSize);
            KernelWidth = kernelSize is { Length: > 1 } ? kernelSize[1] : KernelHeight;
        }

        /// <summary>Height of the kernel.</summary>
        public int KernelHeight { get; }
        /// <summary>Width of the kernel.</summary>
        public int KernelWidth { get; }
        /// <summary>Vertical stride, overriding <see cref="ConvAttribute.Stride"/> for the height; <c>-1</c> (default): <c>Stride</c>.</summary>
        public int StrideH { get; set; } = -1;
        /// <summary>Horizontal stride, overriding <see cref="ConvAttribute.Stride"/> for the width; <c>-1</c> (default): <c>Stride</c>.</summary>
        public int StrideW { get; set; } = -1;
        /// <summary>Zero padding at the top and bottom, overriding <see cref="ConvAttribute.Padding"/>; <c>-1</c> (default): <c>Padding</c>.</summary>
        public int PaddingH { get; set; } = -1;
        /// <summary>Zero padding on the left and right, overriding <see cref="ConvAttribute.Padding"/>; <c>-1</c> (default): <c>Padding</c>.</summary>
        public int PaddingW { get; set; } = -1;
        /// <summary>Vertical dilation, overriding <see cref="ConvAttribute.Dilation"/>; <c>-1</c> (default): <c>Dilation</c>.</summary>
        public int DilationH { get; set; } = -1;
        /// <summary>Horizontal dilation, overriding <see cref="ConvAttribute.Dilation"/>; <c>-1</c> (default): <c>Dilation</c>.</summary>
        public int DilationW { get; set; } = -1;

        internal static int Height(int[]? kernelSize) => kernelSize is { Length: > 0 } ? kernelSize[0] : 0;
    }

    /// <summary>
    /// Shared settings of the 2-D pooling attributes: the window, its stride and its padding (PyTorch defaults). A
    /// square window is one number; a rectangular one is (height, width) as an array.
    /// </summary>
    public abstract class Pool2dAttribute : LayerAttribute
    {
        /// <summary>Pooling with a square window.</summary>
        private protected Pool2dAttribute(int kernelSize) { KernelSize = KernelHeight = KernelWidth = kernelSize; }
        /// <summary>Pooling with a (height, width) window.</summary>
        private protected Pool2dAttribute(int[] kernelSize)
        {
            KernelSize = KernelHeight = Conv2dAttribute.Height(kernelSize);
            KernelWidth = kernelSize is { Length: > 1 } ? kernelSize[1] : KernelHeight;
        }
        /// <summary>Size of the window (its height when it is not square).</summary>
        public int KernelSize { get; }
        /// <summary>Height of the window.</summary>
        public int KernelHeight { get; }
        /// <summary>Width of the window.</summary>
        public int KernelWidth { get; }
        /// <summary>Stride of the window; <c>0</c> (the default) means the kernel size, as in PyTorch.</summary>
        public int Stride { get; set; }
        /// <summary>Vertical stride, overriding <see cref="Stride"/> for the height; <c>-1</c> (default): <c>Stride</c>.</summary>
        public int StrideH { get; set; } = -1;
        /// <summary>Horizontal stride, overriding <see cref="Stride"/> for the width; <c>-1</c> (default): <c>Stride</c>.</summary>
        public int StrideW { get; set; } = -1;
        /// <summary>
        /// Implicit padding on both sides (negative infinity for max pooling, zero for average pooling); at most half the
        /// kernel size. Default 0.
        /// </summary>
        public int Padding { get; set; }
        /// <summary>Padding at the top and bottom, overriding <see cref="Padding"/>; <c>-1</c> (default): <c>Padding</c>.</summary>
        public int PaddingH { get; set; } = -1;
        /// <summary>Padding on the left and right, overriding <see cref="Padding"/>; <c>-1</c> (default): <c>Padding</c>.</summary>
        public int PaddingW { get; set; } = -1;
    }

    /// <summary>
    /// <c>torch.nn.MaxPool2d</c> over <c>(B, C, H, W)</c>. Goes on a <c>TorchSharp.Modules.MaxPool2d</c> property.
    /// A square window is one number, <c>[MaxPool2d(2)]</c>; a rectangular one is (height, width) as an array,
    /// <c>[MaxPool2d(new[] { 2, 1 })]</c>.
    /// </summary>
    public sealed class MaxPool2dAttribute : Pool2dAttribute
    {
        /// <summary>Max pooling with a square window.</summary>
        /// <param name="kernelSize">Size of the window.</param>
        public MaxPool2dAttribute(int kernelSize) : base(kernelSize) { }
        /// <summary>Max pooling with a (height, width) window.</summary>
        /// <param name="kernelSize">Height and width of the window, e.g. <c>new[] { 2, 1 }</c>.</param>
        public MaxPool2dAttribute(int[] kernelSize) : base(kernelSize) { }
        /// <summary>Spacing between window elements. Default 1.</summary>
        public int Dilation { get; set; } = 1;
        /// <summary>Vertical dilation, overriding <see cref="Dilation"/>; <c>-1</c> (default): <c>Dilation</c>.</summary>
        public int DilationH { get; set; } = -1;
        /// <summary>Horizontal dilation, overriding <see cref="Dilation"/>; <c>-1</c> (default): <c>Dilation</c>.</summary>
        public int DilationW { get; set; } = -1;
    }

    /// <summary>
    /// <c>torch.nn.AvgPool2d</c> over <c>(B, C, H, W)</c>. Goes on a <c>TorchSharp.Modules.AvgPool2d</c> property.
    /// A square window is one number, <c>[AvgPool2d(2)]</c>; a rectangular one is (height, width) as an array,
    /// <c>[AvgPool2d(new[] { 2, 1 })]</c>.
    /// </summary>
    public sealed class AvgPool2dAttribute : Pool2dAttribute
    {
        /// <summary>Average pooling with a square window.</summary>
        /// <param name="kernelSize">Size of the window.</param>
        public AvgPool2dAttribute(int kernelSize) : base(kernelSize) { }
        /// <summary>Average pooling with a (height, width) window.</summary>
        /// <param name="kernelSize">Height and width of the window, e.g. <c>new[] { 2, 1 }</c>.</param>
        public AvgPool2dAttribute(int[] kernelSize) : base(kernelSize) { }
    }

    /// <summary>
    /// <c>torch.nn.AdaptiveAvgPool2d</c>: <c>(B, C, H, W) → (B, C, outH, outW)</c>. Goes on a
    /// <c>TorchSharp.Modules.AdaptiveAvgPool2d</c> property.
    /// </summary>
    public sealed class AdaptiveAvgPool2dAttribute : LayerAttribute
    {
        /// <summary>Square output of <paramref name="outputSize"/> × <paramref name="outputSize"/>.</summary>
        public AdaptiveAvgPool2dAttribute(int outputSize) { OutputHeight = outputSize; OutputWidth = outputSize; }
        /// <summary>Output of <paramref name="outputHeight"/> × <paramref name="outputWidth"/>.</summary>
        public AdaptiveAvgPool2dAttribute(int outputHeight, int outputWidth) { OutputHeight = outputHeight; OutputWidth = outputWidth; }
        /// <summary>Output height.</summary>
        public int OutputHeight { get; }
        /// <summary>Output width.</summary>
        public int OutputWidth { get; }
    }

    /// <summary>Shared settings of the batch-normalisation attributes (PyTorch defaults).</summary>
    public abstract class BatchNormAttribute : LayerAttribute
    {
        /// <summary>Creates a batch norm; <paramref name="numFeatures"/> is <c>-1</c> when inferred.</summary>
        private protected BatchNormAttribute(int numFeatures) { NumFeatures = numFeatures; }
        /// <summary>Number of channels (dimension 1 of the input); <c>-1</c> when inferred.</summary>
        public int NumFeatures { get; }
        /// <summary>Added to the variance for numerical stability. Default 1e-5.</summary>
        public double Eps { get; set; } = 1e-5;
        /// <summary>Running-statistics momentum. Default 0.1.</summary>
        public double Momentum { get; set; } = 0.1;
    }

    /// <summary><c>torch.nn.BatchNorm1d</c> over <c>(B, C)</c> or <c>(B, C, L)</c>. Goes on a <c>TorchSharp.Modules.BatchNorm1d</c> property.</summary>
    public sealed class BatchNorm1dAttribute : BatchNormAttribute
    {
        /// <summary>Number of features inferred from dimension 1 of the input.</summary>
        public BatchNorm1dAttribute() : base(-1) { }
        /// <summary>Explicit number of features, checked against the input.</summary>
        public BatchNorm1dAttribute(int numFeatures) : base(numFeatures) { }
    }

    /// <summary><c>torch.nn.BatchNorm2d</c> over <c>(B, C, H, W)</c>. Goes on a <c>TorchSharp.Modules.BatchNorm2d</c> property.</summary>
    public sealed class BatchNorm2dAttribute : BatchNormAttribute
    {
        /// <summary>Number of channels inferred from dimension 1 of the input.</summary>
        public BatchNorm2dAttribute() : base(-1) { }
        /// <summary>Explicit number of channels, checked against the input.</summary>
        public BatchNorm2dAttribute(int numFeatures) : base(numFeatures) { }
    }

    /// <summary><c>torch.nn.LayerNorm</c> over the last dimension. Goes on a <c>TorchSharp.Modules.LayerNorm</c> property.</summary>
    public sealed class LayerNormAttribute : LayerAttribute
    {
        /// <summary>Normalised size inferred from the last dimension of the input.</summary>
        public LayerNormAttribute() { NormalizedShape = -1; }
        /// <summary>Explicit normalised size, checked against the last dimension of the input.</summary>
        public LayerNormAttribute(int normalizedShape) { NormalizedShape = normalizedShape; }
        /// <summary>Size of the last dimension; <c>-1</c> when inferred.</summary>
        public int NormalizedShape { get; }
        /// <summary>Added to the variance for numerical stability. Default 1e-5.</summary>
        public double Eps { get; set; } = 1e-5;
    }

    /// <summary><c>torch.nn.Dropout</c>: zeroes elements with probability p while training. Goes on a <c>TorchSharp.Modules.Dropout</c> property.</summary>
    public sealed class DropoutAttribute : LayerAttribute
    {
        /// <summary>Dropout with PyTorch's default probability 0.5.</summary>
        public DropoutAttribute() { P = 0.5; }
        /// <summary>Dropout with probability <paramref name="p"/>, in [0, 1).</summary>
        public DropoutAttribute(double p) { P = p; }
        /// <summary>Probability of an element being zeroed.</summary>
        public double P { get; }
    }

    /// <summary><c>torch.nn.Flatten</c>: merges dimensions StartDim..EndDim. Goes on a <c>TorchSharp.Modules.Flatten</c> property.</summary>
    public sealed class FlattenAttribute : LayerAttribute
    {
        /// <summary>First dimension to flatten. Default 1 (keeps the batch).</summary>
        public int StartDim { get; set; } = 1;
        /// <summary>Last dimension to flatten. Default -1.</summary>
        public int EndDim { get; set; } = -1;
    }

    /// <summary>
    /// <c>torch.nn.Embedding</c>: a lookup table from integer ids to vectors, <c>(*) → (*, dim)</c>. Needs an
    /// integer input (<c>InputType = DType.Int64</c>). Goes on a <c>TorchSharp.Modules.Embedding</c> property.
    /// </summary>
    public sealed class EmbeddingAttribute : LayerAttribute
    {
        /// <summary>An embedding table.</summary>
        /// <param name="numEmbeddings">Size of the vocabulary.</param>
        /// <param name="embeddingDim">Size of each embedding vector.</param>
        public EmbeddingAttribute(int numEmbeddings, int embeddingDim) { NumEmbeddings = numEmbeddings; EmbeddingDim = embeddingDim; }
        /// <summary>Size of the vocabulary.</summary>
        public int NumEmbeddings { get; }
        /// <summary>Size of each embedding vector.</summary>
        public int EmbeddingDim { get; }
    }

    /// <summary>
    /// Learned positions added to a sequence of vectors, <c>(B, T, C) → (B, T, C)</c>: position <c>t</c> adds row
    /// <c>t</c> of a <c>(maxLength, C)</c> table (GPT-2's <c>wpe</c>). T may be symbolic; a concrete T above
    /// <c>maxLength</c> is a compile-time error (MD0115). Goes on a <c>ModelDsl.PositionalEmbedding</c> property.
    /// </summary>
    public sealed class PositionalEmbeddingAttribute : LayerAttribute
    {
        /// <summary>A position table for sequences of up to <paramref name="maxLength"/> positions; C is inferred.</summary>
        /// <param name="maxLength">The longest sequence the model takes (its context length).</param>
        public PositionalEmbeddingAttribute(int maxLength) { MaxLength = maxLength; EmbeddingDim = -1; }
        /// <summary>A position table with an explicit vector size, checked against the input's last dimension.</summary>
        public PositionalEmbeddingAttribute(int maxLength, int embeddingDim) { MaxLength = maxLength; EmbeddingDim = embeddingDim; }
        /// <summary>The longest sequence the model takes.</summary>
        public int MaxLength { get; }
        /// <summary>Size of each vector (C); <c>-1</c> when inferred.</summary>
        public int EmbeddingDim { get; }
    }

    /// <summary>
    /// A pre-LayerNorm Transformer block over <c>(B, T, C) → (B, T, C)</c>, as in GPT-2 (PyTorch's
    /// <c>nn.TransformerEncoderLayer(norm_first=True, activation="gelu")</c>): <c>x + attn(norm1(x))</c>, then
    /// <c>x + mlp(norm2(x))</c>, with multi-head self-attention through libtorch's <c>scaled_dot_product_attention</c>
    /// and a GELU MLP of <see cref="MlpRatio"/>·C hidden units. <see cref="Repeat"/> stacks that many identical blocks.
    /// Goes on a <c>ModelDsl.TransformerBlock</c> property.
    /// </summary>
    public sealed class TransformerBlockAttribute : LayerAttribute
    {
        /// <summary>Number of attention heads; must divide C. Default 1.</summary>
        public int Heads { get; set; } = 1;
        /// <summary>Whether position t attends only to positions ≤ t (a decoder, GPT). Default <c>true</c>.</summary>
        public bool Causal { get; set; } = true;
        /// <summary>Hidden units of the MLP per input unit. Default 4.</summary>
        public int MlpRatio { get; set; } = 4;
        /// <summary>Dropout on the attention weights and on each residual branch while training, in [0, 1). Default 0.</summary>
        public double Dropout { get; set; }
        /// <summary>Number of identical blocks in sequence (each with its own weights). Default 1.</summary>
        public int Repeat { get; set; } = 1;
        /// <summary>The vector size C, checked against the input's last dimension; <c>-1</c> (default) infers it. Needed only with a hand-written <c>forward</c>.</summary>
        public int EmbeddingDim { get; set; } = -1;
    }

    /// <summary>Shared settings of <see cref="LSTMAttribute"/> and <see cref="GRUAttribute"/> (PyTorch's defaults, except <see cref="BatchFirst"/>).</summary>
    public abstract class RecurrentAttribute : LayerAttribute
    {
        /// <summary>Creates a recurrent layer; <paramref name="inputSize"/> is <c>-1</c> when inferred.</summary>
        private protected RecurrentAttribute(int inputSize, int hiddenSize) { InputSize = inputSize; HiddenSize = hiddenSize; }
        /// <summary>Features of each input step (C); <c>-1</c> when inferred from the input's last dimension.</summary>
        public int InputSize { get; }
        /// <summary>Features of the hidden state (H).</summary>
        public int HiddenSize { get; }
        /// <summary>Recurrent layers stacked, each taking the previous one's output sequence. Default 1.</summary>
        public int NumLayers { get; set; } = 1;
        /// <summary>Whether each layer also runs the sequence backwards; the output then has 2·H features. Default <c>false</c>.</summary>
        public bool Bidirectional { get; set; }
        /// <summary>
        /// Whether the input is (B, T, C), batch first. Default <c>true</c> (PyTorch's default is <c>false</c>, but a
        /// model's input is batch first); <c>false</c> reads the input as (T, B, C).
        /// </summary>
        public bool BatchFirst { get; set; } = true;
    }

    /// <summary>
    /// <c>torch.nn.LSTM</c> over a sequence, <c>(B, T, C) → (B, T, H·directions)</c>: the generated <c>forward</c> runs it
    /// from zero states and passes the output sequence on (<c>x, _ = self.lstm(x)</c>). Gates i, f, g, o as PyTorch's.
    /// Goes on a <c>TorchSharp.Modules.LSTM</c> property; <c>[Quantize(QuantizeMode.DynamicInt8)]</c> converts it as
    /// <c>quantize_dynamic</c> does.
    /// </summary>
    public sealed class LSTMAttribute : RecurrentAttribute
    {
        /// <summary>An LSTM whose input size is inferred from the input's last dimension.</summary>
        /// <param name="hiddenSize">Features of the hidden state.</param>
        public LSTMAttribute(int hiddenSize) : base(-1, hiddenSize) { }
        /// <summary>An LSTM with an explicit input size, checked against the inferred one.</summary>
        /// <param name="inputSize">Features of each input step.</param>
        /// <param name="hiddenSize">Features of the hidden state.</param>
        public LSTMAttribute(int inputSize, int hiddenSize) : base(inputSize, hiddenSize) { }
    }

    /// <summary>
    /// <c>torch.nn.GRU</c> over a sequence, <c>(B, T, C) → (B, T, H·directions)</c>, as <see cref="LSTMAttribute"/>.
    /// Gates r, z, n as PyTorch's. Goes on a <c>TorchSharp.Modules.GRU</c> property.
    /// </summary>
    public sealed class GRUAttribute : RecurrentAttribute
    {
        /// <summary>A GRU whose input size is inferred from the input's last dimension.</summary>
        /// <param name="hiddenSize">Features of the hidden state.</param>
        public GRUAttribute(int hiddenSize) : base(-1, hiddenSize) { }
        /// <summary>A GRU with an explicit input size, checked against the inferred one.</summary>
        /// <param name="inputSize">Features of each input step.</param>
        /// <param name="hiddenSize">Features of the hidden state.</param>
        public GRUAttribute(int inputSize, int hiddenSize) : base(inputSize, hiddenSize) { }
    }

    /// <summary><c>torch.nn.ReLU</c>. Goes on a <c>TorchSharp.Modules.ReLU</c> property.</summary>
    public sealed class ReLUAttribute : LayerAttribute { }

    /// <summary><c>torch.nn.GELU</c>. Goes on a <c>TorchSharp.Modules.GELU</c> property.</summary>
    public sealed class GELUAttribute : LayerAttribute { }

    /// <summary><c>torch.nn.SiLU</c>. Goes on a <c>TorchSharp.Modules.SiLU</c> property.</summary>
    public sealed class SiLUAttribute : LayerAttribute { }

    /// <summary>
    /// <c>torch.nn.LeakyReLU(negative_slope)</c>: <c>x</c> where positive, <c>negativeSlope · x</c> elsewhere. Goes on a
    /// <c>TorchSharp.Modules.LeakyReLU</c> property.
    /// </summary>
    public sealed class LeakyReLUAttribute : LayerAttribute
    {
        /// <summary>A leaky ReLU with PyTorch's default slope, 0.01.</summary>
        public LeakyReLUAttribute() { }

        /// <summary>A leaky ReLU with the slope <paramref name="negativeSlope"/> for negative inputs.</summary>
        /// <param name="negativeSlope">What negative inputs are multiplied by.</param>
        public LeakyReLUAttribute(double negativeSlope) { NegativeSlope = negativeSlope; }

        /// <summary>What negative inputs are multiplied by. Default 0.01.</summary>
        public double NegativeSlope { get; } = 0.01;
    }

    /// <summary><c>torch.nn.Tanh</c>. Goes on a <c>TorchSharp.Modules.Tanh</c> property.</summary>
    public sealed class TanhAttribute : LayerAttribute { }

    /// <summary><c>torch.nn.Sigmoid</c>. Goes on a <c>TorchSharp.Modules.Sigmoid</c> property.</summary>
    public sealed class SigmoidAttribute : LayerAttribute { }

    /// <summary><c>torch.nn.Identity</c>. Goes on a <c>TorchSharp.Modules.Identity</c> property.</summary>
    public sealed class IdentityAttribute : LayerAttribute { }

    /// <summary><c>torch.nn.Softmax(dim)</c>. Goes on a <c>TorchSharp.Modules.Softmax</c> property.</summary>
    public sealed class SoftmaxAttribute : LayerAttribute
    {
        /// <summary>Softmax along <paramref name="dim"/> (negative counts from the end).</summary>
        public SoftmaxAttribute(int dim) { Dim = dim; }
        /// <summary>The dimension the values sum to one along.</summary>
        public int Dim { get; }
    }

    /// <summary><c>torch.nn.LogSoftmax(dim)</c>. Goes on a <c>TorchSharp.Modules.LogSoftmax</c> property.</summary>
    public sealed class LogSoftmaxAttribute : LayerAttribute
    {
        /// <summary>Log-softmax along <paramref name="dim"/> (negative counts from the end).</summary>
        public LogSoftmaxAttribute(int dim) { Dim = dim; }
        /// <summary>The dimension normalised along.</summary>
        public int Dim { get; }
    }

    /// <summary>
    /// Graph models: the element-wise sum of two earlier layers' outputs (<c>torch.add</c>, PyTorch's broadcasting:
    /// shapes aligned from the right, a size 1 stretches). Write the sources with <c>nameof</c>; <c>"input"</c> is the
    /// model input. Goes on a <c>ModelDsl.Layers.Add</c> property.
    /// </summary>
    public sealed class AddAttribute : LayerAttribute
    {
        /// <summary>The sum of <paramref name="first"/> and <paramref name="second"/>.</summary>
        public AddAttribute(string first, string second) { Sources = new[] { first, second }; }
        /// <summary>The layers summed.</summary>
        public string[] Sources { get; }
    }

    /// <summary>
    /// Graph models: the element-wise product of two earlier layers' outputs (<c>torch.mul</c>, PyTorch's
    /// broadcasting), e.g. a gate. Goes on a <c>ModelDsl.Layers.Multiply</c> property.
    /// </summary>
    public sealed class MultiplyAttribute : LayerAttribute
    {
        /// <summary>The product of <paramref name="first"/> and <paramref name="second"/>.</summary>
        public MultiplyAttribute(string first, string second) { Sources = new[] { first, second }; }
        /// <summary>The layers multiplied.</summary>
        public string[] Sources { get; }
    }

    /// <summary>
    /// Graph models: two or more earlier layers' outputs joined along <see cref="Dim"/> (<c>torch.cat</c>): every
    /// other dimension must be equal. Goes on a <c>ModelDsl.Layers.Concat</c> property.
    /// </summary>
    public sealed class ConcatAttribute : LayerAttribute
    {
        /// <summary>The outputs of <paramref name="sources"/>, in that order, joined along <see cref="Dim"/>.</summary>
        public ConcatAttribute(params string[] sources) { Sources = sources; }
        /// <summary>The layers joined, in order.</summary>
        public string[] Sources { get; }
        /// <summary>
        /// The dimension joined along (negative counts from the end, as in PyTorch). Default 1, the channels of
        /// <c>(B, C, …)</c>; PyTorch's <c>torch.cat</c> defaults to 0, the batch, which a model rarely wants.
        /// </summary>
        public int Dim { get; set; } = 1;
    }
}
