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
    public Tensor Run(Tensor input) => Run(("input", input));

    /// <summary>The model's output for its graph inputs by name (a model with several inputs: each by its name).</summary>
    public Tensor Run(params (string Name, Tensor Value)[] inputs)
    {
        var values = inputs.Select(i =>
        {
            var dims = i.Value.shape.Select(d => (int)d).ToArray();
            return i.Value.dtype == ScalarType.Int64
                ? NamedOnnxValue.CreateFromTensor(i.Name, new DenseTensor<long>(i.Value.contiguous().data<long>().ToArray(), dims))
                : NamedOnnxValue.CreateFromTensor(i.Name, new DenseTensor<float>(i.Value.contiguous().data<float>().ToArray(), dims));
        }).ToArray();
        using var results = _session.Run(values);
        var output = results.Single(r => r.Name == "output").AsTensor<float>();
        return tensor(output.ToArray(), output.Dimensions.ToArray().Select(d => (long)d).ToArray());
    }

    public void Dispose() => _session.Dispose();
}
