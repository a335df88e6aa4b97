#!/usr/bin/python3
"""Conformance vectors for ModelDsl's dynamic int8 LSTM and GRU, from real PyTorch.
Run with Debian's python3-torch (PyTorch 1.13, CPU):
    /usr/bin/python3 tests/ModelDsl.Runtime.Tests/Oracles/gen_rnn_quant.py
It writes rnn_quantization.json beside itself (committed, so the test suite needs no Python). Every expected value is
what torch computed: quantize_dynamic(model, {nn.LSTM, nn.GRU}, dtype=torch.qint8) on the onednn engine, whose
modules are torch.ao.nn.quantized.dynamic.LSTM/GRU (aten quantized_lstm / quantized_gru with
QuantizedCellParamsDynamic, reduce_range = True). The int8 weights and scales are read back from torch's packed
cell parameters. An emulation of the arithmetic the C# side implements (below) is checked against torch's output,
so a vector whose numerics the emulation does not explain is never written.
"""
import json
import math
import os

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
torch.backends.quantized.engine = "onednn"


def f32s(v):
    return float(str(np.float32(v)))


def flat(t):
    return [f32s(v) for v in t.detach().float().reshape(-1).tolist()]


def ints(t):
    return [int(v) for v in t.detach().reshape(-1).tolist()]


def f32(x):
    return float(torch.tensor(x, dtype=torch.float32).item())


def activation_qparams(x):
    """SEMANTICS.md Q2 (quint8 with reduce_range), as gen_pruning_quant.py."""
    qmin, qmax = 0, 127
    mn, mx = min(f32(x.min().item()), 0.0), max(f32(x.max().item()), 0.0)
    scale = (mx - mn) / (qmax - qmin)
    if f32(scale) == 0.0 or math.isinf(f32(1.0 / f32(scale))):
        scale = 0.1
    if scale < f32(6.1e-5):
        org = f32(scale)
        scale = f32(6.1e-5)
        if mn == 0.0:
            mx = f32(scale * (qmax - qmin))
        elif mx == 0.0:
            mn = f32(-scale * (qmax - qmin))
        else:
            amp = f32(scale / org)
            mn, mx = f32(mn * amp), f32(mx * amp)
    zp_min, zp_max = qmin - mn / scale, qmax - mx / scale
    err_min, err_max = abs(qmin) - abs(mn / scale), abs(qmax) - abs(mx / scale)
    zp = zp_min if err_min < err_max else zp_max
    zp = qmin if zp < qmin else qmax if zp > qmax else int(round(zp))
    return f32(scale), zp


def qlinear(x, qw, w_scale, bias):
    """One dynamic int8 product: the whole tensor x quantised with one scale/zero point, int32 sums, float bias."""
    a_scale, zp = activation_qparams(x)
    inv = torch.tensor(1.0 / a_scale, dtype=torch.float32)
    qa = torch.clamp(torch.round(x.reshape(-1, x.shape[-1]) * inv + zp), 0, 127)
    acc = (qa - zp).double() @ qw.double().t()
    y = acc.float() * torch.tensor(a_scale * w_scale, dtype=torch.float32) + bias
    return y.reshape(*x.shape[:-1], qw.shape[0])


def cells_of(qm):
    """Per (layer, direction): torch's int8 w_ih/w_hh, their scales, and the float biases."""
    cells = []
    for value in qm._all_weight_values:
        state = value.param.__getstate__()[0]
        (b_ih, b_hh), longs, packed = state[1], state[3], state[4]
        assert longs == [1], "reduce_range must be on (version 2 cell params)"
        w_ih = torch.ops.quantized.linear_unpack(packed[0])[0]
        w_hh = torch.ops.quantized.linear_unpack(packed[1])[0]
        assert w_ih.q_zero_point() == 0 and w_hh.q_zero_point() == 0
        cells.append(dict(qw_ih=w_ih.int_repr(), s_ih=w_ih.q_scale(), b_ih=b_ih.detach(),
                          qw_hh=w_hh.int_repr(), s_hh=w_hh.q_scale(), b_hh=b_hh.detach()))
    return cells


def emulate(mode, cells, x, hx, num_layers, bidirectional, batch_first, hidden):
    """aten's FullLayer on the CPU: each layer's input product over the whole sequence at once (one activation
    scale for all T·B rows), then per step the hidden product (its own scale) added to it and the gates."""
    if batch_first:
        x = x.transpose(0, 1)
    dirs = 2 if bidirectional else 1
    steps_total, batch = x.shape[0], x.shape[1]
    if hx is None:
        z = torch.zeros(num_layers * dirs, batch, hidden)
        hx = (z, z) if mode == "LSTM" else z
    hs, cs, inp = [], [], x
    for layer in range(num_layers):
        outs = []
        for d in range(dirs):
            c = cells[layer * dirs + d]
            igates = qlinear(inp, c["qw_ih"], c["s_ih"], c["b_ih"])
            h = (hx[0] if mode == "LSTM" else hx)[layer * dirs + d]
            cell = hx[1][layer * dirs + d] if mode == "LSTM" else None
            out = [None] * steps_total
            for t in (range(steps_total - 1, -1, -1) if d == 1 else range(steps_total)):
                hgates = qlinear(h, c["qw_hh"], c["s_hh"], c["b_hh"])
                if mode == "LSTM":
                    i, f, g, o = (hgates + igates[t]).chunk(4, 1)
                    cell = f.sigmoid() * cell + i.sigmoid() * g.tanh()
                    h = o.sigmoid() * cell.tanh()
                else:
                    ir, iz, inn = igates[t].chunk(3, 1)
                    hr, hz, hn = hgates.chunk(3, 1)
                    r, z = (hr + ir).sigmoid(), (hz + iz).sigmoid()
                    n = (inn + hn * r).tanh()
                    h = (h - n) * z + n
                out[t] = h
            outs.append(torch.stack(out, 0))
            hs.append(h)
            cs.append(cell)
        inp = torch.cat(outs, 2)
    y = inp.transpose(0, 1) if batch_first else inp
    return (y, torch.stack(hs), torch.stack(cs)) if mode == "LSTM" else (y, torch.stack(hs))


def case(cid, mode, input_size, hidden, layers, bidirectional, batch_first, steps, batch, initial, seed, scale=1.0):
    torch.manual_seed(seed)
    cls = nn.LSTM if mode == "LSTM" else nn.GRU
    m = cls(input_size, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    qm = torch.ao.quantization.quantize_dynamic(nn.Sequential(m), {nn.LSTM, nn.GRU}, dtype=torch.qint8)[0]
    assert type(qm).__module__ == "torch.ao.nn.quantized.dynamic.modules.rnn" and type(qm).__name__ == mode
    x = (torch.randn(batch, steps, input_size) if batch_first else torch.randn(steps, batch, input_size)) * scale
    dirs = 2 if bidirectional else 1
    hx = None
    if initial:
        h0 = torch.randn(layers * dirs, batch, hidden) * 0.5
        hx = (h0, torch.randn(layers * dirs, batch, hidden) * 0.5) if mode == "LSTM" else h0
    with torch.no_grad():
        out = qm(x, hx)
        ref = (out[0], *out[1]) if mode == "LSTM" else (out[0], out[1])
        flo = m(x, hx)
        cells = cells_of(qm)
        emu = emulate(mode, cells, x, hx, layers, bidirectional, batch_first, hidden)
    for a, b in zip(ref, emu):
        tol = 8 * torch.finfo(torch.float32).eps * max(1.0, a.abs().max().item())
        assert (a - b).abs().max().item() <= tol, (cid, (a - b).abs().max().item())
    return {
        "id": cid, "mode": mode, "input_size": input_size, "hidden_size": hidden, "num_layers": layers,
        "bidirectional": bidirectional, "batch_first": batch_first,
        "parameters": {name: flat(p) for name, p in m.named_parameters()},
        "cells": [{"qweight_ih": ints(c["qw_ih"]), "scale_ih": f32s(c["s_ih"]),
                   "qweight_hh": ints(c["qw_hh"]), "scale_hh": f32s(c["s_hh"])} for c in cells],
        "x_shape": list(x.shape), "x": flat(x),
        "h0": None if hx is None else flat(hx[0] if mode == "LSTM" else hx),
        "c0": None if hx is None or mode == "GRU" else flat(hx[1]),
        "y_shape": list(ref[0].shape), "y": flat(ref[0]), "h_n": flat(ref[1]),
        "c_n": flat(ref[2]) if mode == "LSTM" else None,
        "y_float": flat(flo[0]),
    }


def main():
    cases = []
    for mode in ("LSTM", "GRU"):
        m = mode.lower()
        cases += [
            case(f"{m}_5to4_T6_B3", mode, 5, 4, 1, False, False, 6, 3, False, 1),
            case(f"{m}_5to4_T6_B3_init", mode, 5, 4, 1, False, False, 6, 3, True, 2),
            case(f"{m}_7to8_2layers_bidir_batchfirst_init", mode, 7, 8, 2, True, True, 5, 2, True, 3),
            case(f"{m}_3to16_2layers_batchfirst", mode, 3, 16, 2, False, True, 9, 4, False, 4, scale=3.0),
            case(f"{m}_6to5_bidir", mode, 6, 5, 1, True, False, 4, 1, False, 5),
            case(f"{m}_12to10_bidir_batchfirst_T1", mode, 12, 10, 1, True, True, 1, 5, True, 6),
            case(f"{m}_20to12_2layers_batchfirst_init", mode, 20, 12, 2, False, True, 7, 6, True, 7, scale=0.1),
        ]
    data = {"generator": "gen_rnn_quant.py", "torch": torch.__version__, "engine": torch.backends.quantized.engine,
            "cases": cases}
    with open(os.path.join(HERE, "rnn_quantization.json"), "w") as f:
        json.dump(data, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print("wrote rnn_quantization.json:", len(cases), "cases")


if __name__ == "__main__":
    main()
