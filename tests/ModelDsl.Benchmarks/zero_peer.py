#!/usr/bin/env python3
"""The PyTorch peer of `--zero`: DDP with Adam against DDP with torch.distributed.optim.ZeroRedundancyOptimizer
(PyTorch's ZeRO stage 1: optimiser state sharded, gradients all-reduced by DDP, parameters broadcast after the step),
two processes over gloo, on the same model as ZeroBenchmarks (ZeroMlp).

Run with Debian's python3-torch (PyTorch 1.13, apt-get install python3-torch):
    /usr/bin/python3 tests/ModelDsl.Benchmarks/zero_peer.py [steps [rounds]]
Same setting as ZeroBenchmarks: four Linear(1024, 1024) layers with ReLU between, fp32 Adam (lr 1e-3), batch 64 of
random rows per rank, MSE loss, 1 torch thread per process, 3 warm-up rounds, then rounds of `steps` steps (default
20, 5 rounds) that alternate DDP and ZeRO, so load from other processes hits both alike; each step time is the
median round. Per rank: the bytes of the parameters, their gradients and the optimiser state tensors (exp_avg,
exp_avg_sq; Adam's scalar `step` tensor, 4-8 bytes per parameter, is left out as our count leaves out TorchSharp's).
"""
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel as DDP

BATCH, WIDTH, WARMUP = 64, 1024, 3


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU(),
                         nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH))


def state_bytes(optimizer):
    """Bytes of the per-element state tensors the optimiser holds on this rank (its shard, under ZeRO)."""
    local = optimizer.optim if isinstance(optimizer, ZeroRedundancyOptimizer) else optimizer
    return sum(t.numel() * t.element_size() for s in local.state.values() for k, t in s.items()
               if torch.is_tensor(t) and k != "step")


def worker(rank, world, port, steps, rounds, out):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(100 + rank)
    x, y = torch.randn(BATCH, WIDTH), torch.randn(BATCH, WIDTH)
    configs = []
    for name in ("DDP", "ZeroRedundancyOptimizer"):
        model = DDP(mlp())
        opt = (torch.optim.Adam(model.parameters(), lr=1e-3) if name == "DDP"
               else ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.Adam, lr=1e-3))
        configs.append((name, model, opt))

    def once(model, opt):
        dist.barrier()
        start = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        dist.barrier()
        return (time.perf_counter() - start) * 1e3 / steps

    for _, model, opt in configs:
        for _ in range(WARMUP):
            once(model, opt)
    times = [[] for _ in configs]
    for _ in range(rounds):
        for k, (_, model, opt) in enumerate(configs):
            times[k].append(once(model, opt))

    rows = []
    for k, (name, model, opt) in enumerate(configs):
        params = list(model.parameters())
        p = sum(t.numel() * t.element_size() for t in params)
        g = sum(t.grad.numel() * t.grad.element_size() for t in params if t.grad is not None)
        o = state_bytes(opt)
        figures = torch.zeros(world, 3, dtype=torch.float64)
        figures[rank] = torch.tensor([p, g, o], dtype=torch.float64)
        dist.all_reduce(figures)
        with torch.no_grad():
            loss = nn.functional.mse_loss(model.module(x), y).item()
        rows.append((name, figures, statistics.median(times[k]), times[k], loss))
    if rank == 0:
        psi = sum(t.numel() for t in configs[0][1].parameters())
        with open(out, "w") as f:
            f.write(f"PyTorch {torch.__version__}, gloo: ZeroMlp, psi = {psi:,}, fp32 Adam, batch {BATCH} per rank, "
                    f"{world} ranks x 1 thread, {rounds} interleaved rounds of {steps} steps\n")
            f.write("| configuration | rank | parameters | gradients | optimizer state | model state | step (ms, median) | vs DDP | loss after |\n")
            f.write("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
            for name, figures, median, _, loss in rows:
                for r in range(world):
                    p, g, o = (int(v) for v in figures[r].tolist())
                    f.write(f"| {name} | {r} | {p:,} | {g:,} | {o:,} | {p + g + o:,} | {median:.1f} | {median / rows[0][2]:.2f} | {loss:.6f} |\n")
            f.write("step times, every round (ms): " + "; ".join(
                name + " " + " ".join(f"{t:.1f}" for t in ts) for name, _, _, ts, _ in rows) + "\n")
    dist.destroy_process_group()


def main():
    try:
        steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
        rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    except ValueError:
        steps = rounds = 0
    if steps < 1 or rounds < 1 or len(sys.argv) > 3:
        print(f"error: zero_peer.py takes steps per round and rounds, both at least 1 (default 20 5), got {sys.argv[1:]}", file=sys.stderr)
        return 2
    out = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"zero_peer_{os.getpid()}.txt")
    mp.spawn(worker, args=(2, 29531, steps, rounds, out), nprocs=2, join=True)
    with open(out) as f:
        print(f.read(), end="")
    os.remove(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
