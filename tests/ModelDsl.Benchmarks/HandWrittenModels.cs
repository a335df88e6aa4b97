using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Benchmarks;

// The same two models written by hand the usual TorchSharp way: layers as fields, registered under the same names
// and in the same order as the generated ones (so a fixed seed gives both identical weights), and the same forward.

/// <summary>DigitsMlp by hand.</summary>
public sealed class HandWrittenMlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear hidden;
    private readonly ReLU act;
    private readonly Dropout drop;
    private readonly Linear output;

    public HandWrittenMlp() : base(nameof(HandWrittenMlp))
    {
        hidden = nn.Linear(64, 128);
        act = nn.ReLU();
        drop = nn.Dropout(0.1);
        output = nn.Linear(128, 10);
        register_module("Hidden", hidden);
        register_module("Act", act);
        register_module("Drop", drop);
        register_module("Output", output);
    }

    public override Tensor forward(Tensor input)
    {
        var x = hidden.forward(input);
        x = act.forward(x);
        x = drop.forward(x);
        return output.forward(x);
    }
}

/// <summary>DigitsCnn by hand.</summary>
public sealed class HandWrittenCnn : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d conv1;
    private readonly BatchNorm2d norm1;
    private readonly ReLU act1;
    private readonly Conv2d conv2;
    private readonly BatchNorm2d norm2;
    private readonly ReLU act2;
    private readonly MaxPool2d pool;
    private readonly Dropout drop1;
    private readonly Flatten flat;
    private readonly Linear hidden;
    private readonly ReLU act3;
    private readonly Dropout drop2;
    private readonly Linear output;

    public HandWrittenCnn() : base(nameof(HandWrittenCnn))
    {
        conv1 = nn.Conv2d(1, 32, 3, padding: 1);
        norm1 = nn.BatchNorm2d(32);
        act1 = nn.ReLU();
        conv2 = nn.Conv2d(32, 64, 3, padding: 1);
        norm2 = nn.BatchNorm2d(64);
        act2 = nn.ReLU();
        pool = nn.MaxPool2d(2);
        drop1 = nn.Dropout(0.25);
        flat = nn.Flatten();
        hidden = nn.Linear(64 * 4 * 4, 128);
        act3 = nn.ReLU();
        drop2 = nn.Dropout(0.5);
        output = nn.Linear(128, 10);
        register_module("Conv1", conv1);
        register_module("Norm1", norm1);
        register_module("Act1", act1);
        register_module("Conv2", conv2);
        register_module("Norm2", norm2);
        register_module("Act2", act2);
        register_module("Pool", pool);
        register_module("Drop1", drop1);
        register_module("Flat", flat);
        register_module("Hidden", hidden);
        register_module("Act3", act3);
        register_module("Drop2", drop2);
        register_module("Output", output);
    }

    public override Tensor forward(Tensor input)
    {
        var x = conv1.forward(input);
        x = norm1.forward(x);
        x = act1.forward(x);
        x = conv2.forward(x);
        x = norm2.forward(x);
        x = act2.forward(x);
        x = pool.forward(x);
        x = drop1.forward(x);
        x = flat.forward(x);
        x = hidden.forward(x);
        x = act3.forward(x);
        x = drop2.forward(x);
        return output.forward(x);
    }
}

/// <summary>GeneratedResCnn written by hand: the residual block's skip added with torch.add, as PyTorch's ResNet does.</summary>
public sealed class HandWrittenResCnn : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d stem, conv1, conv2;
    private readonly BatchNorm2d norm1, norm2;
    private readonly ReLU stemAct, act1, act2;
    private readonly MaxPool2d pool;
    private readonly Flatten flat;
    private readonly Linear output;

    public HandWrittenResCnn() : base(nameof(HandWrittenResCnn))
    {
        stem = nn.Conv2d(1, 32, 3, padding: 1);
        stemAct = nn.ReLU();
        conv1 = nn.Conv2d(32, 32, 3, padding: 1);
        norm1 = nn.BatchNorm2d(32);
        act1 = nn.ReLU();
        conv2 = nn.Conv2d(32, 32, 3, padding: 1);
        norm2 = nn.BatchNorm2d(32);
        act2 = nn.ReLU();
        pool = nn.MaxPool2d(2);
        flat = nn.Flatten();
        output = nn.Linear(32 * 4 * 4, 10);
        register_module("Stem", stem);
        register_module("StemAct", stemAct);
        register_module("Conv1", conv1);
        register_module("Norm1", norm1);
        register_module("Act1", act1);
        register_module("Conv2", conv2);
        register_module("Norm2", norm2);
        register_module("Act2", act2);
        register_module("Pool", pool);
        register_module("Flat", flat);
        register_module("Output", output);
    }

    public override Tensor forward(Tensor input)
    {
        var s = stemAct.forward(stem.forward(input));
        var x = act1.forward(norm1.forward(conv1.forward(s)));
        x = norm2.forward(conv2.forward(x));
        x = act2.forward(TorchSharp.torch.add(x, s));
        return output.forward(flat.forward(pool.forward(x)));
    }
}
