"""TrainConfig: defaults resolved from the loss, validation, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import TrainConfig


def test_loss_defaults_are_resolved_into_the_config() -> None:
    cfg = TrainConfig(dataset="mnist", arch="dcgan28", loss="wgan-gp")
    assert (cfg.n_critic, cfg.gp_weight, cfg.lr_g, cfg.lr_d, cfg.beta1, cfg.beta2) == (
        5,
        10.0,
        1e-4,
        1e-4,
        0.0,
        0.9,
    )
    assert cfg.z_dim == 100
    assert TrainConfig(dataset="ring8", arch="mlp").z_dim == 2
    wgan = TrainConfig(dataset="ring8", arch="mlp", loss="wgan")
    assert wgan.weight_clip == 0.01 and wgan.n_critic == 5
    # explicit values win (TTUR)
    ttur = TrainConfig(dataset="mnist", arch="dcgan28", lr_g=1e-4, lr_d=4e-4)
    assert (ttur.lr_g, ttur.lr_d) == (1e-4, 4e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss": "bogus"}, "--loss 'bogus'"),
        ({"arch": "resnet"}, "--arch 'resnet'"),
        ({"arch": "mlp"}, "does not fit --dataset 'mnist'"),
        ({"batch_size": 10, "pack": 4}, "multiple of --pack 4"),
        ({"steps": 0}, "--steps must be >= 1"),
        ({"ema": 1.0}, "--ema must be in [0, 1)"),
        ({"z_dim": 0}, "--z-dim must be >= 1"),
        ({"lr_d": -1.0}, "--lr-d must be > 0"),
        ({"beta2": 1.0}, "--beta2 must be in [0, 1)"),
        ({"n_critic": 0}, "--n-critic must be >= 1"),
        ({"gp_weight": -1.0}, "--gp-weight must be >= 0"),
        ({"seed": -3}, "--seed must be >= 0"),
    ],
)
def test_invalid_configs_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match="invalid training config") as e:
        TrainConfig(**{"dataset": "mnist", "arch": "dcgan28", **kwargs})
    assert message in str(e.value)


def test_round_trip_through_json(tmp_path: Path) -> None:
    cfg = TrainConfig(
        dataset="grid25", arch="mlp", loss="hinge", pack=4, spectral_norm=True, ema=0.99
    )
    cfg.save(tmp_path / "config.json")
    again = TrainConfig.load(tmp_path / "config.json")
    assert again == cfg
    assert TrainConfig.from_dict({**cfg.to_dict(), "unknown_future_field": 1}) == cfg
