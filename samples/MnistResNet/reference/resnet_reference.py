"""The MnistResNet sample's model and training plan, written by hand in real PyTorch (1.13, /usr/bin/python3).

It is the oracle for the sample: the same architecture as samples/MnistResNet declares with attributes, with the
state-dict names the generated model registers, trained the way the generated trainer trains (validation split,
per-epoch shuffle, optimiser, per-epoch learning-rate schedule as docs/training.md defines them).

  train   trains it on the sample's CSV files and prints the accuracy and the time of each epoch; this is how
          the sample's plan was chosen (README "MnistResNet"; docs/benchmarks.md).
  check   loads a state dict exported by the sample (`export --format pytorch` or `--format safetensors` is not
          read here: .pt only) with load_state_dict(strict=True), and prints the predicted classes and
          probabilities of the rows of a CSV file as JSON (the interop test compares them with ours).

Usage:
  /usr/bin/python3 resnet_reference.py train [--epochs 10] [--lr 2e-3] [--optimizer adamw] ...
  /usr/bin/python3 resnet_reference.py check MODEL.pt DATA.csv [--limit N]
"""
import argparse
import json
import math
import os
import sys
import time

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
WIDTHS = (16, 32, 64)  # channels of the three stages


class ResidualBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the block's input (or, when it downsamples, its strided 1x1 projection), then ReLU."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.Conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.Norm1 = nn.BatchNorm2d(cout)
        self.Act1 = nn.ReLU()
        self.Conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.Norm2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.Project = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
            self.ProjectNorm = nn.BatchNorm2d(cout)
        else:
            self.Project = None
        self.Act2 = nn.ReLU()

    def forward(self, x):
        y = self.Norm2(self.Conv2(self.Act1(self.Norm1(self.Conv1(x)))))
        skip = x if self.Project is None else self.ProjectNorm(self.Project(x))
        return self.Act2(y + skip)


class MnistResNet(nn.Module):
    """Stem conv3x3-BN-ReLU, three stages of two residual blocks (the 2nd and 3rd halve the size), average pool, Linear 10."""

    def __init__(self, widths=WIDTHS):
        super().__init__()
        c1, c2, c3 = widths
        self.Stem = nn.Conv2d(1, c1, 3, padding=1, bias=False)
        self.StemNorm = nn.BatchNorm2d(c1)
        self.StemAct = nn.ReLU()
        # The names the generated model registers: [Block(Repeat = 2)] Stage1 is an nn.Sequential of two copies
        # (Stage1.0, Stage1.1); each later stage is its downsampling block, then one plain block.
        self.Stage1 = nn.Sequential(ResidualBlock(c1, c1, 1), ResidualBlock(c1, c1, 1))
        self.Stage2Down = ResidualBlock(c1, c2, 2)
        self.Stage2 = ResidualBlock(c2, c2, 1)
        self.Stage3Down = ResidualBlock(c2, c3, 2)
        self.Stage3 = ResidualBlock(c3, c3, 1)
        self.Pool = nn.AdaptiveAvgPool2d(1)
        self.Flat = nn.Flatten()
        self.Output = nn.Linear(c3, 10)

    def forward(self, x):
        x = self.StemAct(self.StemNorm(self.Stem(x)))
        x = self.Stage2(self.Stage2Down(self.Stage1(x)))
        x = self.Stage3(self.Stage3Down(x))
        return self.Output(self.Flat(self.Pool(x)))


def load_csv(path, limit=None, every=1):
    """The sample's CSV: 784 pixels (0/1) then the class per row; the first `limit` rows, or every `every`-th row."""
    rows = []
    with open(path) as f:
        for i, line in enumerate(f):
            if line.strip() and i % every == 0:
                rows.append([int(v) for v in line.split(",")])
                if limit is not None and len(rows) == limit:
                    break
    t = torch.tensor(rows, dtype=torch.int64)
    return t[:, :-1].to(torch.float32).reshape(-1, 1, 28, 28), t[:, -1].clone()


def learning_rate(args, epoch):
    """TrainingPlan.LearningRateAt for the per-epoch interval (docs/training.md)."""
    if args.schedule == "constant":
        return args.lr
    if args.schedule == "step":
        return args.lr * args.gamma ** (epoch // args.step_size)
    if epoch < args.warmup:
        return args.lr * (epoch + 1) / args.warmup
    return args.lr * 0.5 * (1 + math.cos(math.pi * (epoch - args.warmup) / (args.epochs - args.warmup)))


def evaluate(model, x, y):
    model.eval()
    with torch.no_grad():
        correct = sum((model(x[i:i + 1024]).argmax(1) == y[i:i + 1024]).sum().item() for i in range(0, len(x), 1024))
    return correct / len(x)


def train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x, y = load_csv(os.path.join(DATA, "mnist_train.csv"), every=args.every)
    tx, ty = load_csv(os.path.join(DATA, "mnist_test.csv"))
    # random_split with a generator seeded with Seed: the first N - V rows of randperm(N) train, the last V validate.
    n = len(x)
    v = int(math.floor(n * args.val_fraction + 0.5))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed))
    train_idx, val_idx = perm[:n - v], perm[n - v:]
    vx, vy = x[val_idx], y[val_idx]
    x, y = x[train_idx], y[train_idx]

    model = MnistResNet(tuple(args.widths))
    print(f"{sum(p.numel() for p in model.parameters())} parameters, {len(x)} training rows, {v} validation, "
          f"{len(tx)} test; {args.optimizer} lr {args.lr} wd {args.weight_decay} batch {args.batch_size} "
          f"{args.schedule} warmup {args.warmup}, {args.epochs} epochs, {args.threads} threads", flush=True)
    if args.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, nesterov=args.nesterov,
                              weight_decay=args.weight_decay)
    elif args.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    total = 0.0
    for epoch in range(args.epochs):
        for group in opt.param_groups:
            group["lr"] = learning_rate(args, epoch)
        model.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed + epoch))
        start = time.perf_counter()
        running, seen = 0.0, 0
        for i in range(0, len(x), args.batch_size):
            idx = order[i:i + args.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            running += loss.item() * len(idx)
            seen += len(idx)
        seconds = time.perf_counter() - start
        total += seconds
        val = f"val {evaluate(model, vx, vy):.2%} " if v else ""
        print(f"epoch {epoch + 1}/{args.epochs} lr {learning_rate(args, epoch):.5g} loss {running / seen:.4f} {val}"
              f"test {evaluate(model, tx, ty):.2%} {seconds:.1f}s", flush=True)
    print(f"test accuracy {evaluate(model, tx, ty):.2%} on {len(tx)}; training {total:.0f}s "
          f"({total / args.epochs:.1f}s per epoch)")
    if args.save:
        torch.save(model.state_dict(), args.save)


def check(args):
    """Loads an exported state dict strictly and prints this model's predictions on a CSV file as JSON."""
    torch.set_num_threads(args.threads)
    state = torch.load(args.model, map_location="cpu")
    widths = (state["Stem.weight"].shape[0], state["Stage2.Conv1.weight"].shape[0], state["Stage3.Conv1.weight"].shape[0])
    model = MnistResNet(widths)
    model.load_state_dict(state, strict=True)
    model.eval()
    x, _ = load_csv(args.data, args.limit)
    with torch.no_grad():
        probabilities = torch.softmax(model(x * args.feature_scale), dim=1)
    json.dump({"classes": probabilities.argmax(1).tolist(), "probabilities": probabilities.tolist()}, sys.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="adamw")
    t.add_argument("--weight-decay", type=float, default=0.01)
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--nesterov", action="store_true")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--schedule", choices=["constant", "step", "cosine"], default="cosine")
    t.add_argument("--warmup", type=float, default=1)
    t.add_argument("--step-size", type=int, default=10)
    t.add_argument("--gamma", type=float, default=0.1)
    t.add_argument("--val-fraction", type=float, default=0.1)
    t.add_argument("--widths", type=int, nargs=3, default=list(WIDTHS))
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--every", type=int, default=1, help="train on every K-th row only (the file is in class order)")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--save", help="write the trained state dict here (torch.save)")
    c = sub.add_parser("check")
    c.add_argument("model")
    c.add_argument("data")
    c.add_argument("--limit", type=int, default=None)
    c.add_argument("--feature-scale", type=float, default=1.0)
    c.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    train(args) if args.command == "train" else check(args)


if __name__ == "__main__":
    main()
