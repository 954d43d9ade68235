#!/usr/bin/env python3
"""Record PyTorch's optimiser updates as a fixture for incept's optimiser tests.

Two float64 parameters (shapes [2, 3] and [3]) start from a formula and take
three steps with gradients from another formula; the Rust test computes the
same formulas, so only PyTorch's resulting parameter values are stored.

    python3 tools/make_optimizer_fixtures.py > crates/incept-autograd/tests/fixtures/optimizers.txt

Output: one line per optimiser, step and parameter:
`<optimiser> <step> <parameter> <values...>`, values printed with 17
significant digits so that they round-trip exactly.
"""

import math
import sys

import torch

SHAPES = [(2, 3), (3,)]


def initial(k: int, n: int) -> list[float]:
    return [math.cos(0.5 * i + k) for i in range(n)]


def gradient(k: int, step: int, n: int) -> list[float]:
    return [math.sin(0.7 * i + 1.3 * step + k) for i in range(n)]


OPTIMISERS = {
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    "sgd_nesterov_decay": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam_l2": lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
}


def main() -> None:
    out = sys.stdout
    out.write(f"# torch {torch.__version__}\n")
    for name, make in OPTIMISERS.items():
        params = []
        for k, shape in enumerate(SHAPES):
            n = math.prod(shape)
            params.append(torch.tensor(initial(k, n), dtype=torch.float64).reshape(shape).requires_grad_(True))
        optimiser = make(params)
        for step in range(3):
            for k, p in enumerate(params):
                p.grad = torch.tensor(gradient(k, step, p.numel()), dtype=torch.float64).reshape(p.shape)
            optimiser.step()
            for k, p in enumerate(params):
                values = " ".join(f"{v:.17g}" for v in p.detach().reshape(-1).tolist())
                out.write(f"{name} {step} {k} {values}\n")


if __name__ == "__main__":
    main()
