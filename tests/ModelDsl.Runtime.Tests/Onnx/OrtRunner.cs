using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace ModelDsl.Runtime.Tests.Onnx;

/// <summary>Runs an exported ONNX model in ONNX Runtime (its loader validates the graph when the session is created).</summary>
public sealed class OrtRunner : IDisposable
{
    private readonly InferenceSession _session;

    public OrtRunner(byte[] model, int threads = 1)
    {
        using var options = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1 };
        _session = new InferenceSession(model, options);
    }

    public InferenceSession Session => _session;

    /// <summary>The model's output for <paramref name="input"/> (float32 or int64), as a libtorch tensor of ORT's shape.</summary>
    public Tensor Run(Tensor input)
    {
        var dims = input.shape.Select(d => (int)d).ToArray();
        NamedOnnxValue value = input.dtype == ScalarType.Int64
            ? NamedOnnxValue.CreateFromTensor("input", new DenseTensor<long>(input.contiguous().data<long>().ToArray(), dims))
            : NamedOnnxValue.CreateFromTensor("input", new DenseTensor<float>(input.contiguous().data<float>().ToArray(), dims));
        using var results = _session.Run(new[] { value });
        var output = results.Single(r => r.Name == "output").AsTensor<float>();
        return tensor(output.ToArray(), output.Dimensions.ToArray().Select(d => (long)d).ToArray());
    }

    public void Dispose() => _session.Dispose();
}
