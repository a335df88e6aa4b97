#!/usr/bin/python3
"""Real PyTorch as the oracle for ModelDsl's model files (run with Debian's python3-torch: /usr/bin/python3).

  make-import           writes interop_cnn.pt with torch.save (a state dict of InteropCnn with set weights) and the
                        "inputs" and "import" sections of pytorch_vectors.json: what PyTorch computes with it.
  check-export PT ST    loads the files ModelDsl exported (PT: torch.save format, ST: safetensors) into the same
                        PyTorch module and records their SHA-256 and outputs in the "export" section.
  digits FILE CSV       loads an exported Digits CNN into the equivalent nn.Sequential, predicts the CSV's rows
                        (features / 16, as [Train(FeatureScale = 1.0 / 16)] does) and prints JSON
                        {"classes": [...], "probabilities": [[...]]}.

The C# tests (PyTorchInteropTests) read pytorch_vectors.json, so the suite needs no Python; the "digits" mode is run
live by the end-to-end test. Safetensors are read here with json + torch.frombuffer, without the safetensors package.
"""
import collections
import hashlib
import json
import math
import os
import struct
import sys

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "pytorch_vectors.json")


def interop_cnn():
    # Mirrors InteropCnn in InteropModels.cs: the names are the C# layer names.
    return nn.Sequential(collections.OrderedDict([
        ("Conv1", nn.Conv2d(1, 4, 3, padding=1)),
        ("Norm", nn.BatchNorm2d(4)),
        ("Act", nn.ReLU()),
        ("Pool", nn.MaxPool2d(2)),
        ("Flat", nn.Flatten()),
        ("Head", nn.Linear(36, 5)),
    ]))


def digits_cnn():
    # Mirrors samples/Digits/Models.cs DigitsCnn.
    return nn.Sequential(collections.OrderedDict([
        ("Conv1", nn.Conv2d(1, 32, 3, padding=1)), ("Norm1", nn.BatchNorm2d(32)), ("Act1", nn.ReLU()),
        ("Conv2", nn.Conv2d(32, 64, 3, padding=1)), ("Norm2", nn.BatchNorm2d(64)), ("Act2", nn.ReLU()),
        ("Pool", nn.MaxPool2d(2)), ("Drop1", nn.Dropout(0.25)), ("Flat", nn.Flatten()),
        ("Hidden", nn.Linear(1024, 128)), ("Act3", nn.ReLU()), ("Drop2", nn.Dropout(0.5)),
        ("Output", nn.Linear(128, 10)),
    ]))


SAFETENSORS_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "I64": torch.int64,
                      "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    body = bytearray(data[8 + n:])
    state = collections.OrderedDict()
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = SAFETENSORS_DTYPES[info["dtype"]]
        count = math.prod(info["shape"])
        t = torch.frombuffer(body, dtype=dtype, count=count, offset=begin) if count else torch.empty(0, dtype=dtype)
        state[name] = t.reshape(info["shape"]).clone()
    return state


def load_any(path):
    if path.endswith(".safetensors"):
        return load_safetensors(path)
    # weights_only: the file must be a plain state dict, which is what ModelDsl writes.
    return torch.load(path, weights_only=True)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def inputs():
    g = torch.Generator().manual_seed(7)
    return torch.randn(3, 1, 6, 6, generator=g)


def run(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def read_vectors():
    if os.path.exists(VECTORS):
        with open(VECTORS) as f:
            return json.load(f)
    return {}


def write_vectors(v):
    v["torch_version"] = torch.__version__
    with open(VECTORS, "w") as f:
        json.dump(v, f, indent=1)
        f.write("\n")


def make_import():
    torch.manual_seed(3)
    model = interop_cnn()
    # Non-trivial batch-norm state, so that buffers are checked too.
    with torch.no_grad():
        model.Norm.running_mean.copy_(torch.tensor([0.2, -0.1, 0.05, -0.3]))
        model.Norm.running_var.copy_(torch.tensor([0.8, 1.3, 0.6, 2.0]))
        model.Norm.weight.copy_(torch.tensor([1.2, 0.7, 1.0, 0.9]))
        model.Norm.bias.copy_(torch.tensor([0.1, -0.2, 0.0, 0.3]))
    model.Norm.num_batches_tracked.fill_(11)
    path = os.path.join(HERE, "interop_cnn.pt")
    torch.save(model.state_dict(), path)
    x = inputs()
    v = read_vectors()
    v["inputs"] = {"shape": list(x.shape), "values": x.flatten().tolist()}
    v["import"] = {"file": "interop_cnn.pt", "sha256": sha256(path), "outputs": run(model, x).flatten().tolist()}
    write_vectors(v)


def check_export(pt, st):
    v = read_vectors()
    x = torch.tensor(v["inputs"]["values"]).reshape(v["inputs"]["shape"])
    export = {}
    for kind, path in (("pytorch", pt), ("safetensors", st)):
        model = interop_cnn()
        model.load_state_dict(load_any(path), strict=True)
        export[kind] = {"sha256": sha256(path), "outputs": run(model, x).flatten().tolist(),
                        "num_batches_tracked": int(model.Norm.num_batches_tracked)}
    v["export"] = export
    write_vectors(v)


def digits(path, csv):
    model = digits_cnn()
    model.load_state_dict(load_any(path), strict=True)
    rows = [line.split(",") for line in open(csv).read().splitlines() if line.strip()]
    x = torch.tensor([[float(c) for c in r[:64]] for r in rows], dtype=torch.float32).reshape(-1, 1, 8, 8) / 16
    p = torch.softmax(run(model, x), dim=1)
    json.dump({"classes": p.argmax(1).tolist(), "probabilities": p.tolist()}, sys.stdout)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "make-import":
        make_import()
    elif mode == "check-export" and len(sys.argv) == 4:
        check_export(sys.argv[2], sys.argv[3])
    elif mode == "digits" and len(sys.argv) == 4:
        digits(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
