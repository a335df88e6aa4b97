#!/usr/bin/env python3
"""Conformance vectors for ParameterPartition.Create, from real PyTorch's ZeroRedundancyOptimizer.

Run with Debian's python3-torch (PyTorch 1.13):  /usr/bin/python3 gen_zero_partition.py > zero_partition.json
For each case and world size, that many gloo ranks build a ZeroRedundancyOptimizer over parameters of the given
sizes (model order); rank 0 records which rank's partition (_partition_parameters) holds each parameter.
"""
import json
import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.optim import ZeroRedundancyOptimizer

CASES = [
    # The test host's Mlp: Linear 8->32, 32->16, 16->3.
    ("probe_mlp", [256, 32, 512, 16, 48, 3]),
    # The Digits MLP: Linear 64->512, 512->256, 256->10 (one layer holds 78% of the parameters).
    ("digits_mlp", [32768, 512, 131072, 256, 2560, 10]),
    # Equal sizes: ties go to the lowest rank, in model order.
    ("equal", [100, 100, 100, 100, 100]),
    # A transformer-like mix, and an empty parameter.
    ("mixed", [4096, 64, 64, 12288, 192, 4096, 64, 16384, 256, 16384, 64, 0, 640, 10]),
]
WORLD_SIZES = [2, 3, 4]


def worker(rank, world_size, init, sizes, out):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world_size)
    params = [torch.nn.Parameter(torch.zeros(n)) for n in sizes]
    optimizer = ZeroRedundancyOptimizer(params, optimizer_class=torch.optim.SGD, lr=0.1)
    owners = [-1] * len(params)
    for r, groups in enumerate(optimizer._partition_parameters()):
        for group in groups:
            for p in group["params"]:
                owners[next(i for i, q in enumerate(params) if q is p)] = r
    if rank == 0:
        with open(out, "w") as f:
            json.dump(owners, f)
    dist.destroy_process_group()


def main():
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, sizes in CASES:
            for w in WORLD_SIZES:
                init = "file://" + os.path.join(tmp, f"{name}_{w}.store")
                out = os.path.join(tmp, f"{name}_{w}.json")
                mp.spawn(worker, args=(w, init, sizes, out), nprocs=w, join=True)
                with open(out) as f:
                    cases.append({"name": name, "world_size": w, "sizes": sizes, "owners": json.load(f)})
    json.dump({"generator": "gen_zero_partition.py", "torch": torch.__version__, "cases": cases}, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
