"""What a run reports while it trains, besides metrics.jsonl: TensorBoard scalars and images.

TensorBoard is optional (the ``train`` extra installs it): without the package a run says so in
one line and trains on. Only rank 0 logs. A resumed run passes the step after its checkpoint's as
``purge_step``, so TensorBoard drops what a killed attempt logged after that checkpoint, as
``--resume`` drops those lines of metrics.jsonl.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from training.run_dir import TENSORBOARD_DIR

# metrics.jsonl key -> TensorBoard tag; grouped by the prefix, as TensorBoard's sections are.
SCALAR_TAGS = {
    "d_loss": "loss/D",
    "g_loss": "loss/G",
    "p_real": "D/p_real",  # D(x) as a probability
    "p_fake": "D/p_fake",  # D(G(z))
    "d_real": "D/raw_real",  # the raw score (logit or critic value)
    "d_fake": "D/raw_fake",
    "w_distance": "wgan/w_distance",
    "gp": "wgan/gradient_penalty",
    "g_grad_norm": "grad_norm/G",
    "d_grad_norm": "grad_norm/D",
    "lr_g": "lr/G",
    "lr_d": "lr/D",
    "img_per_s": "speed/img_per_s",
    "epoch": "progress/epoch",
}
MISSING_NOTE = "note: tensorboard is not installed: no TensorBoard logs (pip install tensorboard)"


class TensorBoardLog:
    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def scalars(self, record: dict[str, Any]) -> None:
        step = record["step"]
        for key, tag in SCALAR_TAGS.items():
            value = record.get(key)
            if value is not None:
                self.writer.add_scalar(tag, value, step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def image(self, tag: str, path: Path, step: int) -> None:
        """The PNG the run just wrote, as TensorBoard shows images: RGB, channels last."""
        from PIL import Image

        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"))
        self.writer.add_image(tag, array, step, dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_tensorboard(
    out: Path, purge_step: int | None, note: TextIO | None = None
) -> TensorBoardLog | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print(MISSING_NOTE, file=note or sys.stderr)
        return None
    return TensorBoardLog(
        SummaryWriter(log_dir=str(out / TENSORBOARD_DIR), purge_step=purge_step, flush_secs=30)
    )
