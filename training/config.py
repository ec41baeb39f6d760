"""The typed training configuration: saved in every run folder and every checkpoint."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.losses import LOSSES, get_loss

ARCHS = ("mlp", "dcgan28", "dcgan32", "dcgan64")
# Latent size per architecture when --z-dim is not given.
DEFAULT_Z_DIM = {"mlp": 2, "dcgan28": 100, "dcgan32": 100, "dcgan64": 100}


@dataclass
class TrainConfig:
    dataset: str
    arch: str
    loss: str = "ns"
    steps: int = 1000  # generator updates
    out: str = "runs/default"
    batch_size: int = 64
    z_dim: int | None = None
    width: int = 64  # conv channels (dcgan*) or hidden units / 4 (mlp)
    # Optimiser: None means the loss's published default (see training.losses).
    lr_g: float | None = None
    lr_d: float | None = None  # TTUR: set lr_d > lr_g (e.g. 4e-4 vs 1e-4)
    beta1: float | None = None
    beta2: float | None = None
    n_critic: int | None = None
    weight_clip: float | None = None
    gp_weight: float | None = None
    # Class-conditional G and D (conditional batch norm + projection D, training.nets), on the
    # dataset's labels; the number of classes comes from the dataset.
    conditional: bool = False
    # Both learning rates fall linearly to 0 over this final fraction of the steps (0: constant).
    lr_decay: float = 0.0
    # Regularisers
    spectral_norm: bool = False
    pack: int = 1
    ema: float = 0.0  # decay of the generator EMA; 0 disables it
    # Bookkeeping
    seed: int = 0
    data_root: str | None = None
    device: str = "cpu"
    log_every: int = 50
    sample_every: int = 500
    ckpt_every: int = 500
    num_threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        errors = []
        if self.arch not in ARCHS:
            errors.append(f"--arch {self.arch!r}: choose one of {', '.join(ARCHS)}")
        if self.loss not in LOSSES:
            errors.append(f"--loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        for name in (
            "steps",
            "batch_size",
            "width",
            "pack",
            "log_every",
            "sample_every",
            "ckpt_every",
        ):
            if getattr(self, name) < 1:
                errors.append(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.pack >= 1 and self.batch_size % self.pack:
            errors.append(
                f"--batch-size {self.batch_size} must be a multiple of --pack {self.pack}"
            )
        if not 0.0 <= self.lr_decay <= 1.0:
            errors.append(f"--lr-decay must be in [0, 1], got {self.lr_decay}")
        if self.conditional and self.arch == "mlp":
            errors.append("--conditional needs an image dataset (the 2-D toys have no classes)")
        if self.conditional and self.pack > 1:
            errors.append(
                "--conditional and --pack > 1 cannot be combined (a pack has no one class)"
            )
        if not 0.0 <= self.ema < 1.0:
            errors.append(f"--ema must be in [0, 1), got {self.ema}")
        if self.z_dim is not None and self.z_dim < 1:
            errors.append(f"--z-dim must be >= 1, got {self.z_dim}")
        is_toy = self.dataset in ("ring8", "grid25")
        if is_toy != (self.arch == "mlp"):
            errors.append(
                f"--arch {self.arch!r} does not fit --dataset {self.dataset!r}: "
                "use mlp for ring8/grid25 and a dcgan arch for images"
            )
        if errors:
            raise ValueError("invalid training config:\n  " + "\n  ".join(errors))
        if self.z_dim is None:
            self.z_dim = DEFAULT_Z_DIM[self.arch]
        # Resolve the loss's published defaults now, so the saved config says what actually ran.
        loss = get_loss(self.loss)
        self.lr_g = loss.lr_g if self.lr_g is None else self.lr_g
        self.lr_d = loss.lr_d if self.lr_d is None else self.lr_d
        self.beta1 = loss.betas[0] if self.beta1 is None else self.beta1
        self.beta2 = loss.betas[1] if self.beta2 is None else self.beta2
        self.n_critic = loss.n_critic if self.n_critic is None else self.n_critic
        self.weight_clip = loss.weight_clip if self.weight_clip is None else self.weight_clip
        self.gp_weight = loss.gp_weight if self.gp_weight is None else self.gp_weight
        # Checked after the defaults are filled in, so a bad explicit value is caught either way.
        bad = [
            f"--lr-{n} must be > 0, got {v}"
            for n, v in (("g", self.lr_g), ("d", self.lr_d))
            if not v > 0
        ]
        bad += [
            f"--{n} must be in [0, 1), got {v}"
            for n, v in (("beta1", self.beta1), ("beta2", self.beta2))
            if not 0 <= v < 1
        ]
        if self.n_critic < 1:
            bad.append(f"--n-critic must be >= 1, got {self.n_critic}")
        if self.weight_clip is not None and self.weight_clip < 0:
            bad.append(f"--weight-clip must be >= 0 (0 disables clipping), got {self.weight_clip}")
        if self.gp_weight < 0:
            bad.append(f"--gp-weight must be >= 0 (0 disables the penalty), got {self.gp_weight}")
        if self.seed < 0:
            bad.append(f"--seed must be >= 0, got {self.seed}")
        if self.num_threads is not None and self.num_threads < 1:
            bad.append(f"--num-threads must be >= 1, got {self.num_threads}")
        if bad:
            raise ValueError("invalid training config:\n  " + "\n  ".join(bad))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        return cls.from_dict(json.loads(path.read_text()))
