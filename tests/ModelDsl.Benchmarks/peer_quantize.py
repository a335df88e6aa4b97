#!/usr/bin/python3
"""Peer for OptimizationBenchmarks: PyTorch's own quantize_dynamic on the same MLP, same batch, same threads.

    /usr/bin/python3 tests/ModelDsl.Benchmarks/peer_quantize.py [--rounds N] [--threads T]

Debian's python3-torch (PyTorch 1.13, CPU) with the onednn quantized engine (the Debian build has no fbgemm).
The MLP is OptimizationBenchmarks': Linear(4096, 4096), ReLU, Linear(4096, 4096), ReLU, Linear(4096, 10), batch 64,
torch.set_num_threads(2) by default, inference under torch.no_grad(). fp32 and int8 alternate in rounds (about 0.2 s of work
per block), so drift in machine load hits both alike; medians over the rounds are printed, with the rounds' ratios.
Note this build's fp32 GEMM is generic BLAS, not MKL: the fp32 figure is what an apt user gets, not pip's.
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn


def build():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 10)).eval()


def block(model, x, n):
    start = time.perf_counter()
    for _ in range(n):
        model(x)
    return (time.perf_counter() - start) / n * 1000.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.backends.quantized.engine = "onednn"
    dense = build()
    int8 = torch.ao.quantization.quantize_dynamic(dense, {nn.Linear}, dtype=torch.qint8)
    x = torch.randn(64, 4096)

    with torch.no_grad():
        for model in (dense, int8):  # warm-up: first calls pay for one-off initialisation
            for _ in range(3):
                model(x)
        n_dense = max(1, int(0.2 / (block(dense, x, 2) / 1000)))
        n_int8 = max(1, int(0.2 / (block(int8, x, 2) / 1000)))
        fp32_ms, int8_ms, ratios = [], [], []
        for r in range(args.rounds):
            # ABBA order within pairs of rounds, so neither side always runs first.
            if r % 2 == 0:
                a, b = block(dense, x, n_dense), block(int8, x, n_int8)
            else:
                b, a = block(int8, x, n_int8), block(dense, x, n_dense)
            fp32_ms.append(a)
            int8_ms.append(b)
            ratios.append(a / b)

    q = lambda v: statistics.quantiles(v, n=4)  # noqa: E731
    print(f"PyTorch {torch.__version__} peer, engine {torch.backends.quantized.engine}, threads {torch.get_num_threads()}, "
          f"MLP 4096x4096x4096x10, batch 64, {args.rounds} rounds")
    print(f"  fp32 dense       median {statistics.median(fp32_ms):8.2f} ms  (IQR {q(fp32_ms)[0]:.2f}-{q(fp32_ms)[2]:.2f})")
    print(f"  int8 dynamic     median {statistics.median(int8_ms):8.2f} ms  (IQR {q(int8_ms)[0]:.2f}-{q(int8_ms)[2]:.2f})")
    print(f"  speed-up fp32/int8 median {statistics.median(ratios):.2f}x  (IQR {q(ratios)[0]:.2f}-{q(ratios)[2]:.2f})")


if __name__ == "__main__":
    main()
