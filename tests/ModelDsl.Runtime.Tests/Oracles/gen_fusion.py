#!/usr/bin/python3
"""Conformance vectors for ModelDsl's BatchNorm folding (ModelDsl.Runtime.Optimization.Fusion), from real PyTorch.
Run with Debian's python3-torch (PyTorch 1.13, CPU):
    /usr/bin/python3 tests/ModelDsl.Runtime.Tests/Oracles/gen_fusion.py
It writes fusion.json beside itself (committed, so the test suite needs no Python). Every expected value is what
torch computed: torch.nn.utils.fusion.fuse_conv_bn_eval / fuse_linear_bn_eval on eval-mode pairs (the fused weight
and bias), and the unfused pair's output bn(layer(x)) in eval mode, which the fused layer must reproduce.
"""
import json
import os

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

HERE = os.path.dirname(os.path.abspath(__file__))


def flat(t):
    return [float(str(np.float32(v))) for v in t.detach().float().reshape(-1).tolist()]


def stats(bn, g):
    # Running statistics away from (0, 1), as after training.
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.5)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) * 2 + 0.1)
        if bn.affine:
            bn.weight.copy_(torch.randn(bn.num_features, generator=g))
            bn.bias.copy_(torch.randn(bn.num_features, generator=g))


def state(module):
    return {k: {"shape": list(v.shape), "values": flat(v)} for k, v in module.state_dict().items() if k != "num_batches_tracked"}


cases = []
g = torch.Generator().manual_seed(21)
for cid, (cin, cout, k, pad, bias, affine, eps) in enumerate([
        (1, 4, 3, 1, True, True, 1e-5), (3, 5, 3, 0, False, True, 1e-5), (2, 3, 1, 0, True, False, 1e-3)]):
    torch.manual_seed(cid)
    conv = nn.Conv2d(cin, cout, k, padding=pad, bias=bias).eval()
    bn = nn.BatchNorm2d(cout, eps=eps, affine=affine).eval()
    stats(bn, g)
    x = torch.randn(2, cin, 5, 5, generator=g)
    fused = fuse_conv_bn_eval(conv, bn)
    with torch.no_grad():
        expected = bn(conv(x))
    cases.append({"id": f"conv{cid}", "kind": "conv", "in": cin, "out": cout, "kernel": k, "padding": pad, "bias": bias,
                  "affine": affine, "eps": eps, "layer": state(conv), "bn": state(bn),
                  "x": {"shape": list(x.shape), "values": flat(x)},
                  "fused_weight": flat(fused.weight), "fused_bias": flat(fused.bias),
                  "y": {"shape": list(expected.shape), "values": flat(expected)}})

for cid, (fin, fout, bias) in enumerate([(6, 4, True), (5, 3, False)]):
    torch.manual_seed(10 + cid)
    linear = nn.Linear(fin, fout, bias=bias).eval()
    bn = nn.BatchNorm1d(fout).eval()
    stats(bn, g)
    x = torch.randn(3, fin, generator=g)
    fused = fuse_linear_bn_eval(linear, bn)
    with torch.no_grad():
        expected = bn(linear(x))
    cases.append({"id": f"linear{cid}", "kind": "linear", "in": fin, "out": fout, "bias": bias, "affine": True, "eps": 1e-5,
                  "layer": state(linear), "bn": state(bn),
                  "x": {"shape": list(x.shape), "values": flat(x)},
                  "fused_weight": flat(fused.weight), "fused_bias": flat(fused.bias),
                  "y": {"shape": list(expected.shape), "values": flat(expected)}})

with open(os.path.join(HERE, "fusion.json"), "w") as f:
    json.dump({"torch": torch.__version__, "cases": cases}, f, indent=1)
print(f"wrote {len(cases)} cases")
