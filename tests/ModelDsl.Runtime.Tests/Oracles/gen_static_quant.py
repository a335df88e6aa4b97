#!/usr/bin/python3
"""Conformance vectors for ModelDsl's static int8 quantisation ([Quantize(QuantizeMode.StaticInt8)], Quantize.Static),
from real PyTorch. Run with Debian's python3-torch (PyTorch 1.13, CPU):
    /usr/bin/python3 tests/ModelDsl.Runtime.Tests/Oracles/gen_static_quant.py
It writes static_quantization.json beside itself (committed, so the test suite needs no Python).

PyTorch's eager post-training static quantisation of a small CNN shaped like the Digits model
(Conv+BN+ReLU, Conv+BN+ReLU, MaxPool, Flatten, Linear+ReLU, Linear), with fixed weights and BatchNorm statistics:
fuse_modules (Conv+BN+ReLU, Linear+ReLU), qconfig = get_default_qconfig('x86') (HistogramObserver with
reduce_range on activations, per-channel symmetric qint8 weights), QuantStub at the input and DeQuantStub at the
output, prepare, calibrate on fixed batches, convert, run on the onednn engine (Debian's build has no fbgemm).

Every expected value is what torch computed:
- per observer: the tensors it saw during calibration, its min_val/max_val, the range its histogram search chose
  (_non_linear_param_search) and the scale / zero point of calculate_qparams;
- per layer: the fused float weight and bias, the int8 weight (int_repr), its per-channel scales;
- the float model's and the converted model's outputs on a test batch.
"""
import json
import os

import numpy as np
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub, convert, fuse_modules, get_default_qconfig, prepare

HERE = os.path.dirname(os.path.abspath(__file__))
torch.backends.quantized.engine = "onednn"


def flat(t):
    return [float(str(np.float32(v))) for v in t.detach().float().reshape(-1).tolist()]


def ints(t):
    return [int(v) for v in t.reshape(-1).tolist()]


class Net(nn.Module):
    """Layer names as the C# test model's (StaticOracleCnn); quant/dequant are the stubs ModelDsl places itself."""

    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.Conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.Norm1 = nn.BatchNorm2d(4)
        self.Act1 = nn.ReLU()
        self.Conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.Norm2 = nn.BatchNorm2d(6)
        self.Act2 = nn.ReLU()
        self.Pool = nn.MaxPool2d(2)
        self.Flat = nn.Flatten()
        self.Hidden = nn.Linear(96, 16)
        self.Act3 = nn.ReLU()
        self.Output = nn.Linear(16, 10)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.Act1(self.Norm1(self.Conv1(x)))
        x = self.Act2(self.Norm2(self.Conv2(x)))
        x = self.Flat(self.Pool(x))
        x = self.Act3(self.Hidden(x))
        return self.dequant(self.Output(x))


g = torch.Generator().manual_seed(2121)
net = Net()
with torch.no_grad():
    for bn in (net.Norm1, net.Norm2):
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.2)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(bn.num_features, generator=g) * 0.1)
    for layer in (net.Conv1, net.Conv2, net.Hidden, net.Output):
        fan_in = layer.weight[0].numel()
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * (1.5 / fan_in ** 0.5))
        layer.bias.copy_(torch.randn(layer.bias.shape, generator=g) * 0.1)
net.eval()
float_state = {k: {"shape": list(v.shape), "values": flat(v)} for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}

# Calibration batches: pixel-like values in [0, 1), each batch on a different scale so the histograms are combined
# over changing ranges; a test batch beyond the calibrated range exercises clamping.
calibration = [torch.rand(8, 1, 8, 8, generator=g) * s for s in (1.0, 0.6, 1.4)]
test = torch.rand(6, 1, 8, 8, generator=g) * 1.2
with torch.no_grad():
    float_out = net(test)

fused = fuse_modules(net, [["Conv1", "Norm1", "Act1"], ["Conv2", "Norm2", "Act2"], ["Hidden", "Act3"]])
fused.qconfig = get_default_qconfig("x86")
prepared = prepare(fused)

observers = {
    "input": prepared.quant.activation_post_process,
    "Conv1": prepared.Conv1.activation_post_process,
    "Conv2": prepared.Conv2.activation_post_process,
    "Hidden": prepared.Hidden.activation_post_process,
    "Output": prepared.Output.activation_post_process,
}
seen = {name: [] for name in observers}
for name, obs in observers.items():
    obs.register_forward_pre_hook(lambda m, inp, name=name: seen[name].append(inp[0].detach().clone()))
with torch.no_grad():
    for batch in calibration:
        prepared(batch)

observer_cases = []
for name, obs in observers.items():
    new_min, new_max = obs._non_linear_param_search()
    scale, zero_point = obs.calculate_qparams()
    observer_cases.append({
        "name": name,
        "seen": [{"shape": list(t.shape), "values": flat(t)} for t in seen[name]],
        "min_val": float(obs.min_val), "max_val": float(obs.max_val),
        "search_min": float(new_min), "search_max": float(new_max),
        "scale": float(scale), "zero_point": int(zero_point),
    })

converted = convert(prepared)
layers = []
for name in ["Conv1", "Conv2", "Hidden", "Output"]:
    float_module = getattr(prepared, name)
    float_layer = float_module[0] if isinstance(float_module, nn.Sequential) else float_module
    q = getattr(converted, name)
    w = q.weight()
    layers.append({
        "name": name,
        "fused_weight": {"shape": list(float_layer.weight.shape), "values": flat(float_layer.weight)},
        "fused_bias": flat(float_layer.bias),
        "weight_int8": ints(w.int_repr()),
        "weight_scales": flat(w.q_per_channel_scales()),
        "weight_zero_points": ints(w.q_per_channel_zero_points()),
        "output_scale": float(np.float32(q.scale)),
        "output_zero_point": int(q.zero_point),
    })

with torch.no_grad():
    quant_out = converted(test)

result = {
    "torch": torch.__version__,
    "engine": torch.backends.quantized.engine,
    "qconfig": "get_default_qconfig('x86'): HistogramObserver(reduce_range=True), per_channel_symmetric qint8 weights",
    "float_state": float_state,
    "calibration": [{"shape": list(b.shape), "values": flat(b)} for b in calibration],
    "test": {"shape": list(test.shape), "values": flat(test)},
    "input_scale": float(np.float32(converted.quant.scale.item())),
    "input_zero_point": int(converted.quant.zero_point.item()),
    "observers": observer_cases,
    "layers": layers,
    "float_output": flat(float_out),
    "quantized_output": flat(quant_out),
}
with open(os.path.join(HERE, "static_quantization.json"), "w") as f:
    json.dump(result, f, separators=(",", ":"))
print("wrote static_quantization.json:", len(observer_cases), "observers,", len(layers), "layers")
