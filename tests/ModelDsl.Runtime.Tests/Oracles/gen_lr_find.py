"""Vectors for the learning-rate range test (LearningRateFinderTests): the exponential sweep, the smoothed loss,
the divergence stop and the suggestion, computed with PyTorch as Lightning's lr_find computes them.

Lightning (pytorch_lightning/tuner/lr_finder.py): _ExponentialLR gives lr = start * (end/start) ** r; the callback
keeps avg = beta*avg + (1-beta)*loss, smoothed = avg / (1 - beta**n) (here n = 1, 2, ... as fastai counts; see
docs/training.md), stops once smoothed > 4 * best after the first batch, and suggestion() takes
torch.gradient(smoothed[skip_begin:-skip_end] (finite ones)) and its argmin (skip_begin=10, skip_end=1).

Run with /usr/bin/python3 (PyTorch 1.13); writes lr_find.json beside this script.
"""
import json
import math
import os

import torch

BETA, FACTOR, SKIP_BEGIN, SKIP_END = 0.98, 4.0, 10, 1


def sweep_lrs(start, end, steps):
    r = torch.arange(steps, dtype=torch.float64) / (steps - 1)
    return (start * (end / start) ** r).tolist()


def smooth(losses):
    avg, best, out = 0.0, math.inf, []
    for n, loss in enumerate(losses, start=1):
        avg = BETA * avg + (1 - BETA) * loss
        s = avg / (1 - BETA ** n)
        stop = not math.isfinite(loss) or (n > 1 and s > FACTOR * best)
        if s < best or n == 1:
            best = s
        out.append(s)
        if stop:
            return out, n - 1
    return out, None


def suggest(smoothed):
    idx = torch.arange(len(smoothed))[SKIP_BEGIN:-SKIP_END]
    values = torch.tensor(smoothed, dtype=torch.float64)[SKIP_BEGIN:-SKIP_END]
    finite = torch.isfinite(values)
    values, idx = values[finite], idx[finite]
    if len(values) < 2:
        return None
    gradient = torch.gradient(values)[0]
    return int(idx[torch.argmin(gradient)].item())


def case(name, losses):
    smoothed, stop = smooth(losses)
    # JSON has no NaN: null stands for it.
    def j(values):
        return [v if math.isfinite(v) else None for v in values]
    return {"id": name, "losses": j(losses), "smoothed": j(smoothed), "stop_at": stop, "suggestion": suggest(smoothed)}


def main():
    g = torch.Generator().manual_seed(19)
    steps = 100
    i = torch.arange(steps, dtype=torch.float64)
    noise = torch.randn(steps, generator=g, dtype=torch.float64) * 0.05
    # Flat, a fall, a floor, then a blow-up: the shape of a real sweep.
    u_shape = (2.3 - 1.6 * torch.sigmoid((i - 45) / 6) + 0.02 * torch.exp((i - 70) / 4) + noise).tolist()
    # Rises steadily: stops once the smoothed loss passes 4x the best.
    rising = (1.0 + 0.0 * i + torch.exp(i / 8) * 0.05).tolist()
    nan = u_shape[:60] + [float("nan")] + u_shape[61:]
    cases = [
        case("u_shape", u_shape),
        case("rising", rising),
        case("nan_at_60", nan),
        case("too_short", u_shape[:11]),
    ]
    out = {"lrs": {"start": 1e-7, "end": 10.0, "steps": steps, "values": sweep_lrs(1e-7, 10.0, steps)}, "cases": cases}
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "lr_find.json"), "w") as f:
        json.dump(out, f, indent=1, allow_nan=False)
        f.write("\n")
    for c in cases:
        print(c["id"], "stop", c["stop_at"], "suggestion", c["suggestion"], "points", len(c["smoothed"]))


if __name__ == "__main__":
    main()
