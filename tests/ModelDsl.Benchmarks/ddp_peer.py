#!/usr/bin/env python3
"""The PyTorch peer of `--ddp-scaling`: PyTorch's own DistributedDataParallel (gloo) on the same Digits CNN.

Run with Debian's python3-torch (PyTorch 1.13, apt-get install python3-torch):
    /usr/bin/python3 tests/ModelDsl.Benchmarks/ddp_peer.py
Same setting as DistributedBenchmarks.DdpScaling: optdigits.tra scaled by 1/16, batch 64 per rank, AdamW
(lr 2e-3, weight decay 0.01), cross-entropy, 1 torch thread per process, 5 warm-up steps, then the median of 3 rounds
of 40 steps. World size 1 alternates with world size 2 (two processes, gloo over localhost), three pairs; each
pair's efficiency = samples/s at 2 / (2 x the mean of the world-size-1 figures on either side), and the median is
reported, as DdpScaling does.
"""
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

BATCH, ROUNDS, STEPS, WARMUP = 64, 3, 40, 5


def digits_path():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "..", "..", "samples", "Digits", "data", "optdigits.tra")


def cnn():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))


def train(rank, world):
    torch.set_num_threads(1)
    raw = np.loadtxt(digits_path(), delimiter=",", dtype=np.float32)
    x = torch.from_numpy(raw[:, :64] / 16).reshape(-1, 1, 8, 8)
    y = torch.from_numpy(raw[:, 64].astype(np.int64))
    torch.manual_seed(0)
    model = cnn()
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    sampler = torch.utils.data.distributed.DistributedSampler(range(len(x)), num_replicas=world, rank=rank, shuffle=True, seed=0)
    order = torch.tensor(list(sampler))
    pos = 0

    def step():
        nonlocal pos
        if pos + BATCH > len(order):
            pos = 0
        idx = order[pos:pos + BATCH]
        pos += BATCH
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()

    for _ in range(WARMUP):
        step()
    rates = []
    for _ in range(ROUNDS):
        if world > 1:
            dist.barrier()
        start = time.perf_counter()
        for _ in range(STEPS):
            step()
        if world > 1:
            dist.barrier()
        rates.append(BATCH * world * STEPS / (time.perf_counter() - start))
    return sorted(rates)[ROUNDS // 2]


def worker(rank, world, port, out):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    rate = train(rank, world)
    if rank == 0:
        with open(out, "w") as f:
            f.write(str(rate))
    dist.destroy_process_group()


def main():
    pairs = 3
    one = [train(0, 1)]
    two = []
    for i in range(pairs):
        out = tempfile.mktemp()
        mp.spawn(worker, args=(2, 29511 + i, out), nprocs=2, join=True)
        with open(out) as f:
            two.append(float(f.read()))
        os.remove(out)
        one.append(train(0, 1))
    eff = [two[i] / (one[i] + one[i + 1]) for i in range(pairs)]
    print(f"PyTorch {torch.__version__} DDP (gloo)")
    print("| run | 1 x 1 samples/s (before, after) | 2 x 1 samples/s | efficiency |")
    print("| --- | ---: | ---: | ---: |")
    for i in range(pairs):
        print(f"| {i + 1} | {one[i]:.0f}, {one[i + 1]:.0f} | {two[i]:.0f} | {eff[i]:.2f} |")
    print(f"scaling efficiency (median): {sorted(eff)[pairs // 2]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
