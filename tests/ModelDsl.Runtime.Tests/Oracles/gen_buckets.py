#!/usr/bin/env python3
"""Conformance vectors for GradientReducer.AssignBuckets, from real PyTorch's DDP bucketing.

Run with Debian's python3-torch (PyTorch 1.13):  /usr/bin/python3 gen_buckets.py > buckets.json
DDP rebuilds its buckets after the first iteration in gradient-ready order (reducer.cpp, rebuild_buckets), calling
compute_bucket_assignment_by_size with the tensors in that order, their original indices, and the caps
[_DEFAULT_FIRST_BUCKET_BYTES (1 MiB), bucket_cap_mb]. For a feed-forward model the ready order is the reverse
parameter order, which is what ModelDsl assigns from the start; this script asks PyTorch for exactly that.
"""
import json
import sys

import torch
import torch.distributed as dist

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def case(name, params, cap_mb, first_bytes=dist._DEFAULT_FIRST_BUCKET_BYTES):
    tensors = [torch.empty(numel, dtype=DTYPES[dtype]) for numel, dtype in params]
    order = list(reversed(range(len(tensors))))
    cap = int(cap_mb * 1024 * 1024)
    buckets, limits = dist._compute_bucket_assignment_by_size(
        [tensors[i] for i in order], [first_bytes, cap], [False] * len(tensors), order)
    return {"name": name, "params": [{"numel": n, "dtype": d} for n, d in params], "cap_mb": cap_mb,
            "first_bytes": first_bytes, "buckets": [list(b) for b in buckets], "limits": list(limits)}


def main():
    f = "float32"
    cases = [
        # The Digits CNN: conv 1->32 (3x3), BatchNorm2d(32), Linear 512->10.
        case("digits_cnn", [(288, f), (32, f), (32, f), (32, f), (5120, f), (10, f)], 25),
        # The Digits MLP: Linear 64->128, Linear 128->10.
        case("digits_mlp", [(8192, f), (128, f), (1280, f), (10, f)], 25),
        # Four 1024x1024 layers (16 MiB): the first bucket closes at 1 MiB, the rest at the cap.
        case("mlp_4x1024", [(1048576, f), (1024, f)] * 4, 25),
        case("mlp_4x1024_cap4", [(1048576, f), (1024, f)] * 4, 4),
        case("mlp_4x1024_cap1", [(1048576, f), (1024, f)] * 4, 1),
        # Exactly at the cap: a bucket closes when its bytes reach (>=) the cap.
        case("exact_cap", [(262144, f), (262144, f), (262144, f), (262144, f), (262144, f)], 1),
        # Mixed dtypes: buckets per dtype, each with its own first cap.
        case("mixed_dtypes", [(300000, "float32"), (200000, "float64"), (300000, "float32"), (100000, "float16"),
                              (70000, "float64"), (600000, "bfloat16"), (5, "float32")], 2),
        # Tiny caps (in bytes: 1 KiB first, 2 KiB after) as the multi-rank test uses.
        case("tiny_caps", [(2048, f), (64, f), (4096, f), (64, f), (512, f), (8, f)], 2 / 1024, first_bytes=1024),
        # Empty parameters and a single huge one.
        case("with_empty", [(0, f), (10, f), (0, f), (7000000, f), (3, f)], 25),
    ]
    json.dump({"generator": "gen_buckets.py", "torch": torch.__version__, "cases": cases}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
