#!/usr/bin/env python3
"""Time the training example's network in PyTorch on this machine.

Builds the same small-input GoogLeNet as incept's training example
(torchvision's layers with incept's small-input stem: width multiplier,
conv1 3x3/1, conv2 1x1, conv3 3x3, no first max pool, 3x3 "5x5" branches,
batch norm with eps 0.001, pools with ceil mode, a 2x2/2 pool before 5a,
auxiliary heads pooled to 4x4, dropout 0.2 and 0.7), and
times SGD steps (Nesterov momentum 0.9, weight decay 5e-4) on batches of
random 1x28x28 images. Prints training images per second.

    python3 tools/pytorch_googlenet_baseline.py --threads 2 --batches 30

Needs torch; never run by tests or CI.
"""

import argparse
import time

import torch
from torch import nn
import torch.nn.functional as F

CONFIGS = [
    (64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64),
    (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128),
    (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128),
]


def scale(c, w):
    return max(1, round(c * w))


class Block(nn.Sequential):
    def __init__(self, c_in, c_out, k, p=0):
        super().__init__(nn.Conv2d(c_in, c_out, k, padding=p, bias=False), nn.BatchNorm2d(c_out, eps=1e-3), nn.ReLU())


class Inception(nn.Module):
    def __init__(self, c_in, c):
        super().__init__()
        self.b1 = Block(c_in, c[0], 1)
        self.b2 = nn.Sequential(Block(c_in, c[1], 1), Block(c[1], c[2], 3, 1))
        # torchvision builds the "5x5" branch with a 3x3 convolution.
        self.b3 = nn.Sequential(Block(c_in, c[3], 1), Block(c[3], c[4], 3, 1))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), Block(c_in, c[5], 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class Aux(nn.Module):
    def __init__(self, c_in, w, classes):
        super().__init__()
        self.conv = Block(c_in, scale(128, w), 1)
        self.fc1 = nn.Linear(scale(128, w) * 16, scale(1024, w))
        self.fc2 = nn.Linear(scale(1024, w), classes)

    def forward(self, x):
        x = self.conv(F.adaptive_avg_pool2d(x, 4)).flatten(1)
        return self.fc2(F.dropout(F.relu(self.fc1(x)), 0.7, self.training))


class GoogLeNet(nn.Module):
    def __init__(self, w=0.25, classes=10):
        super().__init__()
        self.stem = nn.Sequential(
            Block(1, scale(64, w), 3, 1), Block(scale(64, w), scale(64, w), 1), Block(scale(64, w), scale(192, w), 3, 1)
        )
        c_in, self.mods, aux_in = scale(192, w), nn.ModuleList(), []
        for i, cfg in enumerate(CONFIGS):
            c = [scale(v, w) for v in cfg]
            self.mods.append(Inception(c_in, c))
            c_in = c[0] + c[2] + c[4] + c[5]
            if i in (2, 5):
                aux_in.append(c_in)
        self.aux = nn.ModuleList([Aux(a, w, classes) for a in aux_in])
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x):
        x = F.max_pool2d(self.stem(x), 3, 2, ceil_mode=True)
        aux = []
        for i, m in enumerate(self.mods):
            if i == 2:
                x = F.max_pool2d(x, 3, 2, ceil_mode=True)
            if i == 7:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            x = m(x)
            if self.training and i in (2, 5):
                aux.append(self.aux[len(aux)](x))
        x = F.dropout(F.adaptive_avg_pool2d(x, 1).flatten(1), 0.2, self.training)
        return self.fc(x), aux


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--width", type=float, default=0.25)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = GoogLeNet(args.width)
    print(f"torch {torch.__version__}, {sum(p.numel() for p in net.parameters())} parameters, {args.threads} threads")
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(args.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch_size,))
    net.train()
    for step in range(args.batches + 3):
        if step == 3:  # the first steps warm up the allocator and kernels
            start = time.perf_counter()
        opt.zero_grad()
        logits, aux = net(x)
        loss = F.cross_entropy(logits, y) + 0.3 * sum(F.cross_entropy(a, y) for a in aux)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    print(f"training: {args.batches * args.batch_size / seconds:.0f} images/s over {args.batches} batches of {args.batch_size}")


if __name__ == "__main__":
    main()
