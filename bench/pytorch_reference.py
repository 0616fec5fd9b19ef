"""PyTorch-eager reference of the worker's training loop, written as a careful PyTorch user
would: the same paper CNN (or VGG-11-BN), Adam, batch 128, the whole dataset in memory as one
normalized tensor, shuffled by index each epoch, evaluation excluded from the timed part.

Prints one JSON object: {"variant", "epochs": [{"epoch", "seconds", "test_accuracy"}]}.
"""
import argparse
import gzip
import json
import os
import struct
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return torch.frombuffer(bytearray(data[4 + 4 * dims :]), dtype=torch.uint8).reshape(shape)


def find(folder, name):
    for candidate in (name, name + ".gz"):
        p = os.path.join(folder, candidate)
        if os.path.exists(p):
            return p
    raise SystemExit(f"{folder}: missing {name}")


def load_mnist(folder, train_limit):
    x = read_idx(find(folder, "train-images-idx3-ubyte")).float().div(255).unsqueeze(1)
    y = read_idx(find(folder, "train-labels-idx1-ubyte")).long()
    tx = read_idx(find(folder, "t10k-images-idx3-ubyte")).float().div(255).unsqueeze(1)
    ty = read_idx(find(folder, "t10k-labels-idx1-ubyte")).long()
    if train_limit:
        x, y = x[:train_limit], y[:train_limit]
    norm = lambda t: (t - 0.1307) / 0.3081
    return norm(x), y, norm(tx), ty


def load_cifar10(folder, train_limit):
    inner = os.path.join(folder, "cifar-10-batches-bin")
    folder = inner if os.path.isdir(inner) else folder

    def batch(name):
        raw = torch.frombuffer(bytearray(open(os.path.join(folder, name), "rb").read()), dtype=torch.uint8)
        raw = raw.reshape(-1, 3073)
        return raw[:, 1:].reshape(-1, 3, 32, 32).float().div(255), raw[:, 0].long()

    parts = [batch(f"data_batch_{i}.bin") for i in range(1, 6)]
    x = torch.cat([p[0] for p in parts])
    y = torch.cat([p[1] for p in parts])
    tx, ty = batch("test_batch.bin")
    if train_limit:
        x, y = x[:train_limit], y[:train_limit]
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    return (x - mean) / std, y, (tx - mean) / std, ty


class PaperCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        return self.fc2(x)


def vgg11_bn():
    layers, c = [], 3
    for v in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            c = v
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--model", default="paper-cnn", choices=["paper-cnn", "vgg11-bn"])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-limit", type=int, default=0)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--fused-adam", action="store_true", help="torch.optim.Adam(fused=True)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--tf32", default="conv", choices=["conv", "all", "off"])
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    # The CUDA settings the worker trains under by default (grid `training.tf32: conv`, not
    # deterministic): TF32 in convolutions only, as PyTorch's defaults, set explicitly; cuDNN
    # autotuning on.
    torch.backends.cudnn.conv.fp32_precision = "tf32" if a.tf32 != "off" else "ieee"
    torch.backends.cuda.matmul.fp32_precision = "tf32" if a.tf32 == "all" else "ieee"
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    dev = torch.device(a.device)
    if a.model == "paper-cnn":
        x, y, tx, ty = load_mnist(os.path.join(a.data_dir, "mnist"), a.train_limit)
        model = PaperCnn()
    else:
        x, y, tx, ty = load_cifar10(os.path.join(a.data_dir, "cifar-10"), a.train_limit)
        model = vgg11_bn()
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    x, tx = x.to(dev).contiguous(memory_format=fmt), tx.to(dev).contiguous(memory_format=fmt)
    y, ty = y.to(dev), ty.to(dev)
    model = model.to(dev, memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=a.fused_adam or None)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    epochs = []
    for epoch in range(1, a.epochs + 1):
        model.train()
        sync()
        t0 = time.perf_counter()
        perm = torch.randperm(len(x), device=dev)
        for i in range(0, len(x), 128):
            idx = perm[i : i + 128]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
                logits = model(x[idx])
            loss = F.cross_entropy(logits.float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync()
        seconds = time.perf_counter() - t0
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(tx), 500):
                correct += (model(tx[i : i + 500]).argmax(1) == ty[i : i + 500]).sum().item()
        epochs.append({"epoch": epoch, "seconds": seconds, "test_accuracy": correct / len(tx)})
    variant = "pytorch-eager" + ("-channels-last" if a.channels_last else "")
    variant += "-fused-adam" if a.fused_adam else ""
    variant += "-bf16" if a.precision == "bf16" else ""
    print(json.dumps({"variant": variant, "model": a.model, "epochs": epochs}))


if __name__ == "__main__":
    main()
