#!/usr/bin/python3
"""Peer for OptimizationBenchmarks and Int8KernelBenchmarks: PyTorch's own quantize_dynamic on the same layers, same
batch, same threads.

    /usr/bin/python3 tests/ModelDsl.Benchmarks/peer_quantize.py [--rounds N] [--threads T]
        [--engines onednn,fbgemm,qnnpack] [--workloads mlp,hidden64,hidden1] [--int8-only]

Workloads: "mlp" is OptimizationBenchmarks' MLP, Linear(4096, 4096), ReLU, Linear(4096, 4096), ReLU, Linear(4096, 10) at
batch 64 (the default); "hidden64"/"hidden1" is the Digits CNN's Hidden layer, Linear(1024, 128), at batch 64 / 1.
Debian's python3-torch (PyTorch 1.13, CPU); an engine the build lacks (Debian's has no fbgemm) is reported and skipped.
torch.set_num_threads(2) by default, inference under torch.no_grad(). fp32 and int8 alternate in rounds (about 0.2 s
of work per block), so drift in machine load hits both alike; medians over the rounds are printed, with the rounds'
ratios. Note this build's fp32 GEMM is generic BLAS, not MKL: the fp32 figure is what an apt user gets, not pip's
(seconds for the MLP on some CPUs); --int8-only skips it and times int8 alone.
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn


def build(workload):
    torch.manual_seed(1)
    if workload == "mlp":
        model = nn.Sequential(nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 10))
        shape, name = (64, 4096), "MLP 4096x4096x4096x10, batch 64"
    else:
        batch = 64 if workload == "hidden64" else 1
        model = nn.Sequential(nn.Linear(1024, 128))
        shape, name = (batch, 1024), f"Linear(1024, 128) (Digits Hidden), batch {batch}"
    torch.manual_seed(42)
    return model.eval(), torch.randn(*shape), name


def block(model, x, n):
    start = time.perf_counter()
    for _ in range(n):
        model(x)
    return (time.perf_counter() - start) / n * 1000.0


def run(engine, workload, rounds, int8_only):
    torch.backends.quantized.engine = engine
    dense, x, name = build(workload)
    int8 = torch.ao.quantization.quantize_dynamic(dense, {nn.Linear}, dtype=torch.qint8)
    with torch.no_grad():
        for model in (int8,) if int8_only else (dense, int8):  # warm-up: first calls pay for one-off initialisation
            for _ in range(3):
                model(x)
        if int8_only:
            n_int8 = max(1, int(0.2 / (block(int8, x, 2) / 1000)))
            int8_ms = [block(int8, x, n_int8) for _ in range(rounds)]
            q = statistics.quantiles(int8_ms, n=4)
            print(f"PyTorch {torch.__version__} peer, engine {engine}, threads {torch.get_num_threads()}, {name}, {rounds} rounds, int8 only")
            print(f"  int8 dynamic     median {statistics.median(int8_ms):8.3f} ms  (IQR {q[0]:.3f}-{q[2]:.3f})")
            return
        n_dense = max(1, int(0.2 / (block(dense, x, 2) / 1000)))
        n_int8 = max(1, int(0.2 / (block(int8, x, 2) / 1000)))
        fp32_ms, int8_ms, ratios = [], [], []
        for r in range(rounds):
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
          f"{name}, {rounds} rounds")
    print(f"  fp32 dense       median {statistics.median(fp32_ms):8.3f} ms  (IQR {q(fp32_ms)[0]:.3f}-{q(fp32_ms)[2]:.3f})")
    print(f"  int8 dynamic     median {statistics.median(int8_ms):8.3f} ms  (IQR {q(int8_ms)[0]:.3f}-{q(int8_ms)[2]:.3f})")
    print(f"  speed-up fp32/int8 median {statistics.median(ratios):.2f}x  (IQR {q(ratios)[0]:.2f}-{q(ratios)[2]:.2f})")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--engines", default="onednn")
    parser.add_argument("--workloads", default="mlp")
    parser.add_argument("--int8-only", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    for engine in args.engines.split(","):
        if engine not in torch.backends.quantized.supported_engines:
            print(f"PyTorch {torch.__version__} peer, engine {engine}: not in this build "
                  f"(supported: {', '.join(e for e in torch.backends.quantized.supported_engines if e != 'none')})")
            continue
        for workload in args.workloads.split(","):
            run(engine, workload, args.rounds, args.int8_only)


if __name__ == "__main__":
    main()
