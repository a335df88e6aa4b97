"""What cutting 30% of each residual block's inner channels (Conv1's outputs, Norm1, Conv2's inputs) does to the
trained sample without fine-tuning, in real PyTorch, under three channel rankings. The cut is simulated exactly by
zeroing the removed channels' Conv1 rows and Norm1 weight and bias (eval mode: ReLU(0) = 0, Conv2 reads nothing).

    /usr/bin/python3 reference/prune_check.py MODEL.pt data/mnist_test.csv   # MODEL.pt: `export --format pytorch`
"""
import sys

import torch

import resnet_reference as R


def cut_accuracy(path, x, y, score, fraction=0.3):
    model = R.MnistResNet()
    model.load_state_dict(torch.load(path, map_location="cpu"), strict=True)
    model.eval()
    state = model.state_dict()  # the model's own tensors: zeroing them changes the model
    with torch.no_grad():
        for block in [k[:-len(".Conv1.weight")] for k in state if k.endswith(".Conv1.weight")]:
            w, g, b, v = (state[block + s] for s in (".Conv1.weight", ".Norm1.weight", ".Norm1.bias", ".Norm1.running_var"))
            s = score(w, g, v)
            drop = torch.argsort(s, stable=True)[:int(round(fraction * len(s)))]  # round half to even, as the runtime
            w[drop] = 0
            g[drop] = 0
            b[drop] = 0
    return R.evaluate(model, x, y)


def main():
    torch.set_num_threads(1)
    x, y = R.load_csv(sys.argv[2])
    print("L2 of the conv rows (the runtime's ranking):", cut_accuracy(sys.argv[1], x, y, lambda w, g, v: w.flatten(1).norm(dim=1)))
    print("|gamma| / sqrt(var) * L2 (BatchNorm-aware):", cut_accuracy(sys.argv[1], x, y, lambda w, g, v: g.abs() / (v + 1e-5).sqrt() * w.flatten(1).norm(dim=1)))
    print("|gamma| (network slimming):", cut_accuracy(sys.argv[1], x, y, lambda w, g, v: g.abs()))


if __name__ == "__main__":
    main()
