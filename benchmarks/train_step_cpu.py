"""Measure training iterations/s on the CPU (one DiceCE + AdamW step, batch of 2 patches, as the bundles train).

Usage: ``python benchmarks/train_step_cpu.py [--sizes 32 96] [--models ultralight_unet3d_m uxnet3d] [--steps 2]``.
The first step is a warm-up and is not timed.
"""

from __future__ import annotations

import argparse
import time

import torch
from monai.losses import DiceCELoss

import ultralight3d


def measure(model_name: str, size: int, steps: int, in_channels: int = 1, num_classes: int = 3) -> float:
    """Iterations per second of ``steps`` timed training steps at ``size``³ (batch 2)."""
    net = ultralight3d.create_model(model_name, in_channels=in_channels, out_channels=num_classes)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    x = torch.randn(2, in_channels, size, size, size)
    y = torch.randint(0, num_classes, (2, 1, size, size, size))

    def step() -> None:
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 96])
    p.add_argument("--models", nargs="+", default=["ultralight_unet3d_m", "uxnet3d"])
    p.add_argument("--steps", type=int, default=1)
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for m in args.models:
        for s in args.sizes:
            ips = measure(m, s, args.steps)
            print(f"{m:22s} {s:3d}^3 batch 2: {ips:.3f} it/s ({1 / ips:.2f} s/it)", flush=True)


if __name__ == "__main__":
    main()
