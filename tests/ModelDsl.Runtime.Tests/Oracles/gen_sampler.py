#!/usr/bin/env python3
"""Conformance vectors for ModelDsl.Runtime.Distributed.DistributedSampler, from real PyTorch.

Run with Debian's python3-torch (PyTorch 1.13):  /usr/bin/python3 gen_sampler.py > sampler.json
The committed sampler.json is what the tests read; the test suite itself needs no Python.
Each case lists every rank's indices for one (N, R, shuffle, seed, epoch, drop_last), taken from
torch.utils.data.distributed.DistributedSampler itself (its randperm uses a torch.Generator seeded with
seed + epoch, which libtorch 2.10 reproduces through TorchSharp).
"""
import json
import sys

import torch
from torch.utils.data.distributed import DistributedSampler


class Sized:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


def case(n, r, shuffle, seed, epoch, drop_last):
    ranks = []
    for rank in range(r):
        s = DistributedSampler(Sized(n), num_replicas=r, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        s.set_epoch(epoch)
        idx = list(s)
        assert len(idx) == len(s)
        ranks.append(idx)
    s0 = DistributedSampler(Sized(n), num_replicas=r, rank=0, shuffle=shuffle, seed=seed, drop_last=drop_last)
    return {"n": n, "replicas": r, "shuffle": shuffle, "seed": seed, "epoch": epoch, "drop_last": drop_last,
            "num_samples": s0.num_samples, "total_size": s0.total_size, "indices": ranks}


def main():
    cases = []
    # Every small N and R, both paddings, with and without shuffling (N < R, N = R, N % R = 0 and != 0).
    for n in [0, 1, 2, 3, 5, 7, 10, 16, 17]:
        for r in [1, 2, 3, 4, 5, 8]:
            for drop_last in [False, True]:
                cases.append(case(n, r, False, 0, 0, drop_last))
                cases.append(case(n, r, True, 0, 0, drop_last))
    # Seeds (negative and 64-bit included) and epochs.
    for seed in [1, 42, 12345, -1, -7, 2**40 + 3]:
        for epoch in [0, 1, 7]:
            cases.append(case(23, 3, True, seed, epoch, False))
            cases.append(case(23, 4, True, seed, epoch, True))
    # Larger datasets, e.g. the optdigits training split (3823 samples; 3441 after a 10 % validation split).
    for n, r in [(3823, 2), (3441, 2), (3441, 3), (1000, 7), (64, 2)]:
        for epoch in [0, 3]:
            cases.append(case(n, r, True, 0, epoch, False))
            cases.append(case(n, r, True, 5, epoch, True))
    json.dump({"generator": "gen_sampler.py", "torch": torch.__version__, "cases": cases}, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
