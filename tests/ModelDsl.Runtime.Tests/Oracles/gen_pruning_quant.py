#!/usr/bin/python3
"""Conformance vectors for ModelDsl.Runtime.Pruning and ModelDsl.Runtime.Quantization, from real PyTorch.

Run with Debian's python3-torch (PyTorch 1.13, CPU):

    /usr/bin/python3 tests/ModelDsl.Runtime.Tests/Oracles/gen_pruning_quant.py

It writes pruning.json and quantization.json beside itself; both are committed so that the test suite needs
no Python. Every expected value below is what torch computed (masks from torch.nn.utils.prune, outputs and int8
weights from torch.ao.quantization.quantize_dynamic on the onednn engine). The only derived values are the
activation scale and zero point of each dynamic int8 call, which torch does not expose: they are computed with
the rules of SEMANTICS.md section 2 and checked here, against torch's own output, before they are written.
"""
import json
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.utils.prune as prune

HERE = os.path.dirname(os.path.abspath(__file__))
torch.backends.quantized.engine = "onednn"  # onednn honours reduce_range (SEMANTICS.md Q2); qnnpack does not


def f32s(v):
    """A float32 as the shortest decimal that reads back as the same float32 (keeps the JSON small)."""
    return float(str(np.float32(v)))


def flat(t):
    return [f32s(v) for v in t.detach().float().reshape(-1).tolist()]


def ints(t):
    return [int(v) for v in t.detach().reshape(-1).tolist()]


class Holder(nn.Module):
    """A module with one parameter, 'weight', of any shape (the C# side uses a matching module)."""

    def __init__(self, w):
        super().__init__()
        self.weight = nn.Parameter(w.clone())


def amount_json(a):
    return {"value": a, "is_count": isinstance(a, int)}


def step_json(s):
    """A step as JSON: the amount with its Python type, and an infinite norm order as "inf"/"-inf" (JSON has no inf)."""
    out = dict(s, amount=amount_json(s["amount"]))
    if "n" in s and math.isinf(s["n"]):
        out["n"] = "inf" if s["n"] > 0 else "-inf"
    return out


def apply_step(module, step):
    method, amount = step["method"], step["amount"]
    if method == "l1_unstructured":
        prune.l1_unstructured(module, "weight", amount)
    elif method == "random_unstructured":
        prune.random_unstructured(module, "weight", amount)
    elif method == "ln_structured":
        prune.ln_structured(module, "weight", amount, step["n"], step["dim"])
    elif method == "random_structured":
        prune.random_structured(module, "weight", amount, step["dim"])
    else:
        raise ValueError(method)


def distinct(shape, seed):
    """Random values with distinct magnitudes and distinct channel norms, so no test sits on a tie."""
    g = torch.Generator().manual_seed(seed)
    n = int(torch.tensor(shape).prod())
    perm = torch.randperm(n, generator=g).float()
    signs = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
    return ((perm + 1) / n * signs + torch.rand(n, generator=g) * 1e-3).reshape(shape)


def pruning_cases():
    cases = []

    def case(cid, w, steps, seed=None):
        m = Holder(w)
        masks = []
        for s in steps:
            if seed is not None:
                torch.manual_seed(seed)
            apply_step(m, s)
            masks.append(flat(m.weight_mask))
            # module.weight is mask * orig
            assert torch.equal(m.weight, m.weight_orig * m.weight_mask)
        cases.append({
            "id": cid, "shape": list(w.shape), "weight": flat(w), "seed": seed,
            "steps": [step_json(s) for s in steps],
            "masks": masks,
        })

    # SEMANTICS.md P1, P3, P3b, P4, P4b, P4c
    p1 = torch.tensor([0.5, -0.1, 0.3, -0.7, 0.2])
    case("P1", p1, [{"method": "l1_unstructured", "amount": 0.4}])
    case("P3", p1, [{"method": "l1_unstructured", "amount": 0.4}, {"method": "l1_unstructured", "amount": 0.34}])
    case("P3b", p1, [{"method": "l1_unstructured", "amount": 0.4}, {"method": "l1_unstructured", "amount": 0.5}])
    p4 = torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.5, 0.5]])
    case("P4", p4, [{"method": "ln_structured", "amount": 1, "n": 2, "dim": 0}])
    case("P4b", p4, [{"method": "ln_structured", "amount": 0.5, "n": 2, "dim": 0}])
    p4c = torch.tensor([[5.0, 0.0], [0.0, 3.0], [0.0, 3.0]])
    case("P4c_n1", p4c, [{"method": "ln_structured", "amount": 1, "n": 1, "dim": 1}])
    case("P4c_inf", p4c, [{"method": "ln_structured", "amount": 1, "n": math.inf, "dim": 1}])

    # P2: fraction -> count, half to even, on 10 elements
    w10 = distinct([10], 1)
    for a in (0.25, 0.35, 0.15, 0.05, 0, 1.0, 7):
        case(f"P2_{a}", w10, [{"method": "l1_unstructured", "amount": a}])

    # Unstructured, bigger and multi-dimensional; iterative composition
    w = distinct([6, 7], 2)
    for a in (0.0, 0.3, 0.5, 0.9, 1.0, 13, 42):
        case(f"L1_6x7_{a}", w, [{"method": "l1_unstructured", "amount": a}])
    case("L1_then_L1", w, [{"method": "l1_unstructured", "amount": 0.5}, {"method": "l1_unstructured", "amount": 0.5},
                           {"method": "l1_unstructured", "amount": 3}])
    case("L1_then_Ln", w, [{"method": "l1_unstructured", "amount": 0.4}, {"method": "ln_structured", "amount": 0.5, "n": 2, "dim": 0}])
    case("Ln_then_L1", w, [{"method": "ln_structured", "amount": 2, "n": 1, "dim": 1}, {"method": "l1_unstructured", "amount": 0.5}])
    case("Ln_dim0_then_dim1", w, [{"method": "ln_structured", "amount": 0.5, "n": 2, "dim": 0},
                                  {"method": "ln_structured", "amount": 0.5, "n": 2, "dim": 1},
                                  {"method": "ln_structured", "amount": 1, "n": 2, "dim": 0}])

    # LnStructured over n and dims, on a matrix and a conv weight
    conv = distinct([4, 3, 3, 2], 3)
    for n in (1, 2, 3, math.inf, -math.inf):
        for dim in (0, 1, -1):
            case(f"Ln_6x7_n{n}_d{dim}", w, [{"method": "ln_structured", "amount": 0.5, "n": n, "dim": dim}])
        for dim in (0, 1, 2, -1):
            case(f"Ln_conv_n{n}_d{dim}", conv, [{"method": "ln_structured", "amount": 0.34, "n": n, "dim": dim}])
    case("Ln_conv_iter", conv, [{"method": "ln_structured", "amount": 1, "n": 2, "dim": 0},
                                {"method": "ln_structured", "amount": 1, "n": 2, "dim": 0},
                                {"method": "l1_unstructured", "amount": 0.5}])

    # Random methods with a seeded global generator (libtorch must draw the same stream)
    case("Random_unstructured", w, [{"method": "random_unstructured", "amount": 0.5}], seed=0)
    case("Random_unstructured_iter", w, [{"method": "random_unstructured", "amount": 0.3},
                                         {"method": "random_unstructured", "amount": 0.5}], seed=7)
    case("Random_structured", conv, [{"method": "random_structured", "amount": 0.5, "dim": 0}], seed=1)
    case("Random_structured_d1", w, [{"method": "random_structured", "amount": 3, "dim": 1}], seed=2)
    return cases


def global_cases():
    out = []

    def gcase(cid, tensors, pre, amount, method="l1"):
        mods = [Holder(t) for t in tensors]
        for i, steps in pre.items():
            for s in steps:
                apply_step(mods[i], s)
        pm = prune.L1Unstructured if method == "l1" else prune.RandomUnstructured
        prune.global_unstructured([(m, "weight") for m in mods], pm, amount=amount)
        out.append({
            "id": cid, "shapes": [list(t.shape) for t in tensors], "weights": [flat(t) for t in tensors],
            "pre": {str(i): [step_json(s) for s in steps] for i, steps in pre.items()},
            "amount": amount_json(amount), "masks": [flat(m.weight_mask) for m in mods],
        })

    # SEMANTICS.md P5
    gcase("P5", [torch.tensor([0.1, -0.5]), torch.tensor([[0.3], [0.05]])], {}, 2)
    a, b, c = distinct([5, 4], 11), distinct([3, 3, 2], 12) * 0.5, distinct([7], 13) * 2
    gcase("G_frac", [a, b, c], {}, 0.6)
    gcase("G_count", [a, b, c], {}, 17)
    gcase("G_prepruned", [a, b, c], {1: [{"method": "l1_unstructured", "amount": 0.5}],
                                     0: [{"method": "ln_structured", "amount": 1, "n": 2, "dim": 0}]}, 0.5)
    return out


def error_cases():
    out = []

    def err(cid, fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - the message is the vector
            out.append({"id": cid, "type": type(e).__name__, "message": str(e)})
            return
        raise AssertionError(cid + " did not raise")

    lin = lambda: nn.Linear(5, 3)  # noqa: E731
    err("amount_float_high", lambda: prune.l1_unstructured(lin(), "weight", 1.5))
    err("amount_float_negative", lambda: prune.l1_unstructured(lin(), "weight", -0.1))
    err("amount_int_negative", lambda: prune.l1_unstructured(lin(), "weight", -1))
    err("amount_count_too_big", lambda: prune.l1_unstructured(lin(), "weight", 16))
    err("structured_1d", lambda: prune.ln_structured(lin(), "bias", 0.5, 2, 0))
    err("structured_dim_high", lambda: prune.ln_structured(lin(), "weight", 0.5, 2, 2))
    err("remove_unpruned", lambda: prune.remove(lin(), "weight"))
    err("global_structured", lambda: prune.global_unstructured([(lin(), "weight")], prune.LnStructured, amount=0.5, n=2, dim=0))

    def p3b_then_count():
        m = Holder(torch.tensor([0.5, -0.1, 0.3, -0.7, 0.2]))
        prune.l1_unstructured(m, "weight", 0.4)
        prune.l1_unstructured(m, "weight", 0.5)
        prune.l1_unstructured(m, "weight", 2)
    err("P3b_count_among_survivors", p3b_then_count)
    return out


def names():
    lin = nn.Linear(5, 3)
    r = {}
    prune.l1_unstructured(lin, "weight", 0.4)
    r["after_weight"] = {"parameters": [n for n, _ in lin.named_parameters()], "buffers": [n for n, _ in lin.named_buffers()],
                         "state_dict": list(lin.state_dict().keys())}
    prune.l1_unstructured(lin, "bias", 1)
    r["after_bias"] = {"parameters": [n for n, _ in lin.named_parameters()], "buffers": [n for n, _ in lin.named_buffers()],
                       "state_dict": list(lin.state_dict().keys())}
    prune.remove(lin, "weight")
    r["after_remove_weight"] = {"parameters": [n for n, _ in lin.named_parameters()], "buffers": [n for n, _ in lin.named_buffers()],
                                "state_dict": list(lin.state_dict().keys())}
    return r


# ---------------------------------------------------------------------------------------------------------------
# Dynamic quantisation


def f32(x):
    return float(torch.tensor(x, dtype=torch.float32).item())


def weight_qparams(w):
    """Reference for SEMANTICS.md Q1; checked against torch's packed weight below."""
    mn, mx = min(w.min().item(), 0.0), max(w.max().item(), 0.0)
    scale = (torch.tensor(max(-mn, mx), dtype=torch.float32) / 127.5).item()
    return max(scale, torch.finfo(torch.float32).eps)


def activation_qparams(x):
    """SEMANTICS.md Q2: quint8 with reduce_range (0..127); the result is checked against torch's output."""
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
    zp = qmin if zp < qmin else qmax if zp > qmax else int(round(zp))  # round(): half to even, like nearbyint
    return f32(scale), zp


def emulate(x, qw, w_scale, bias, a_scale, zp):
    inv = torch.tensor(1.0 / a_scale, dtype=torch.float32)
    qa = torch.clamp(torch.round(x.reshape(-1, x.shape[-1]) * inv + zp), 0, 127)
    acc = (qa - zp).double() @ qw.double().t()
    y = acc.float() * torch.tensor(a_scale * w_scale, dtype=torch.float32)
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], qw.shape[0])


def quant_cases():
    out = []

    def qcase(cid, lin, x):
        model = nn.Sequential(lin)
        qm = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
        with torch.no_grad():
            y = qm(x)
            yf = model(x)
        packed = qm[0].weight()
        qw = packed.int_repr()
        w = lin.weight.detach()
        assert packed.q_scale() == weight_qparams(w), cid
        assert packed.q_zero_point() == 0
        a_scale, zp = activation_qparams(x)
        ye = emulate(x, qw, packed.q_scale(), None if lin.bias is None else lin.bias.detach(), a_scale, zp)
        tol = 4 * torch.finfo(torch.float32).eps * max(1.0, y.abs().max().item())
        assert (ye - y).abs().max().item() <= tol, (cid, (ye - y).abs().max().item())
        out.append({
            "id": cid, "in_features": lin.in_features, "out_features": lin.out_features,
            "weight": flat(w), "bias": None if lin.bias is None else flat(lin.bias),
            "x_shape": list(x.shape), "x": flat(x),
            "qweight": ints(qw), "w_scale": f32s(packed.q_scale()),
            "a_scale": f32s(a_scale), "a_zero_point": zp,
            "y": flat(y), "y_float": flat(yf),
        })

    torch.manual_seed(0)
    # SEMANTICS.md Q1/Q2
    q1 = nn.Linear(2, 2)
    with torch.no_grad():
        q1.weight.copy_(torch.tensor([[0.5, -1.0], [0.25, 0.75]]))
        q1.bias.copy_(torch.tensor([0.1, -0.2]))
    qcase("Q1Q2", q1, torch.tensor([[1.0, -2.0]]))
    # Q3: all-zero weight
    q3 = nn.Linear(3, 2)
    with torch.no_grad():
        q3.weight.zero_()
    qcase("Q3", q3, torch.randn(2, 3))
    for cid, (fin, fout, batch, bias, scale) in {
        "5x4_b3": (5, 4, (3,), True, 1.0),
        "64x32_b16": (64, 32, (16,), True, 3.0),
        "33x9_b7_nobias": (33, 9, (7,), False, 0.5),
        "40x24_b2x5": (40, 24, (2, 5), True, 1.0),
        "80x24_b1": (80, 24, (1,), True, 10.0),
    }.items():
        lin = nn.Linear(fin, fout, bias=bias)
        qcase(cid, lin, torch.randn(*batch, fin) * scale)
    lin = nn.Linear(16, 8)
    qcase("positive_input", lin, torch.rand(4, 16) + 0.5)     # min > 0: interval widened to include 0
    qcase("negative_input", lin, -torch.rand(4, 16) - 0.5)    # max < 0
    qcase("zero_input", lin, torch.zeros(3, 16))              # scale 0 -> 0.1
    qcase("tiny_input", lin, torch.randn(3, 16) * 1e-4)       # scale below 6.1e-5 is raised
    # Exact ties: with max - min = 127/16 the activation scale is 1/16, and inputs on a 1/32 grid make x/scale
    # land on halves. With an odd zero point, onednn's nearbyint(x/scale + zp) differs from nearbyint(x/scale) + zp
    # (which quantize_per_tensor computes), and half-to-even differs from half-up.
    tie = nn.Linear(64, 8)
    for cid, lo in (("ties_zp33", -2.0625), ("ties_zp49", -3.0625)):
        hi = lo + 127 / 16
        x = torch.randint(int(lo * 32), int(hi * 32) + 1, (16, 64)).float() / 32
        x[0, 0], x[0, 1] = lo, hi
        qcase(cid, tie, x)
    big = nn.Linear(16, 8)
    with torch.no_grad():
        big.weight[0, 0] = 40.0                               # an outlier sets the weight scale
    qcase("outlier_weight", big, torch.randn(5, 16))
    return out


def mlp_case():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(6, 20)
    qm = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    with torch.no_grad():
        y = qm(x)
    return {
        "layers": [{"in": l.in_features, "out": l.out_features, "weight": flat(l.weight), "bias": flat(l.bias)}
                   for l in model if isinstance(l, nn.Linear)],
        "x_shape": list(x.shape), "x": flat(x), "y": flat(y),
    }


def float16_cases():
    # PyTorch 1.13's onednn engine has no fp16 dynamic Linear (linear_prepack_fp16 is fbgemm-only), so this is
    # what torch's fp16 path defines: weights saturated to +-65504, rounded to half, the product in float32.
    torch.manual_seed(5)
    lin = nn.Linear(12, 5)
    with torch.no_grad():
        lin.weight[0, 0] = 1e5   # saturates to 65504
        lin.weight[1, 1] = 1e-3 + 1e-7
    x = torch.randn(4, 12)
    w16 = lin.weight.detach().clamp(-65504, 65504).half()
    with torch.no_grad():
        y = x @ w16.float().t() + lin.bias
    return [{"id": "fp16_12x5", "in_features": 12, "out_features": 5, "weight": flat(lin.weight), "bias": flat(lin.bias),
             "x_shape": list(x.shape), "x": flat(x), "weight_fp16": flat(w16.float()), "y": flat(y)}]


def main():
    pruning = {
        "generator": "gen_pruning_quant.py", "torch": torch.__version__,
        "cases": pruning_cases(), "global": global_cases(), "errors": error_cases(), "names": names(),
    }
    quant = {
        "generator": "gen_pruning_quant.py", "torch": torch.__version__, "engine": torch.backends.quantized.engine,
        "linear": quant_cases(), "mlp": mlp_case(), "float16": float16_cases(),
    }
    for name, data in (("pruning.json", pruning), ("quantization.json", quant)):
        with open(os.path.join(HERE, name), "w") as f:
            json.dump(data, f, indent=None, separators=(",", ":"))
            f.write("\n")
        print("wrote", name)


if __name__ == "__main__":
    main()
