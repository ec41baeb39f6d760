"""How the SWD responds to known damage on real images: held-out real vs blur and affine copies.

    python -m training.swd_references [--dataset cifar10] [--n 2048] [--data-root DIR]

Two disjoint random halves of the test split: one is the reference, the other is compared
as is, blurred (sigma 0.5, 1, 2 px) and randomly shifted/rotated (training/reference_images.py).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from training import real_images, swd
from training.reference_images import gaussian_blur, random_affine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args(argv)
    shape = real_images.NATIVE_SHAPES[args.dataset]
    _, test, _ = real_images.reference_and_held_out(args.dataset, shape, 2 * args.n, args.data_root)
    order = np.random.default_rng(0).permutation(len(test))
    a, b = test[order[: args.n]], test[order[args.n : 2 * args.n]]
    ref = swd.Descriptors.of(a, 0)
    candidates = {
        "real": b,
        "blur_sigma0.5": gaussian_blur(b, 0.5),
        "blur_sigma1": gaussian_blur(b, 1.0),
        "blur_sigma2": gaussian_blur(b, 2.0),
        "affine": random_affine(b),
    }
    out = {name: swd.swd(ref, swd.Descriptors.of(u8, 1), 2) for name, u8 in candidates.items()}
    print(json.dumps({"dataset": args.dataset, "n": len(a), "swd_x1e3": out}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
