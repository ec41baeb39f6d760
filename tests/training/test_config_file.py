"""``--config FILE``: TOML / YAML / JSON files of TrainConfig fields, flags over them, same errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from training.config import TrainConfig
from training.train import main, parse_args, resolve_config

TOY = ["--dataset", "ring8", "--width", "4", "--batch-size", "16", "--no-progress"]
FLAGS = [
    "--dataset", "ring8", "--loss", "hinge", "--spectral-norm", "--lr-d", "4e-4", "--lr-g",
    "1e-4", "--beta1", "0.0", "--ema", "0.9", "--steps", "3", "--width", "4", "--pack", "2",
]  # fmt: skip
TOML = """
dataset = "ring8"
loss = "hinge"
spectral_norm = true
lr_d = 4e-4
lr_g = 1e-4
beta1 = 0.0
ema = 0.9
steps = 3
width = 4
pack = 2
"""
YAML = """
dataset: ring8
loss: hinge
spectral_norm: true
lr_d: 4.0e-4
lr_g: 1e-4   # YAML 1.1 reads this as a string: the parser's float() still takes it
beta1: 0.0
ema: 0.9
steps: 3
width: 4
pack: 2
"""


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def resolved(argv: list[str]) -> TrainConfig:
    return resolve_config(parse_args(argv))[0]


def run_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_a_run_folders_config_json_trains_the_same_config(tmp_path: Path) -> None:
    first, again = tmp_path / "first", tmp_path / "again"
    assert main([*FLAGS, "--no-progress", "--out", str(first)]) == 0
    saved = TrainConfig.load(first / "config.json")
    assert main(["--config", str(first / "config.json"), "--out", str(again), "--no-progress"]) == 0
    assert TrainConfig.load(again / "config.json").to_dict() == {
        **saved.to_dict(),
        "out": str(again),
    }


@pytest.mark.parametrize(("suffix", "text"), [(".toml", TOML), (".yaml", YAML), (".yml", YAML)])
def test_toml_and_yaml_files_give_the_flags_config(tmp_path: Path, suffix: str, text: str) -> None:
    path = tmp_path / f"run{suffix}"
    path.write_text(text)
    out = ["--out", str(tmp_path / "run")]
    assert resolved(["--config", str(path), *out]) == resolved([*FLAGS, *out])


def test_flags_override_the_file_and_the_file_may_name_the_run_folder(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(TOML + f'out = "{tmp_path / "from-file"}"\n')
    cfg = resolved(["--config", str(path), "--steps", "7", "--no-spectral-norm"])
    assert (cfg.steps, cfg.spectral_norm, cfg.loss) == (7, False, "hinge")
    assert cfg.out == str(tmp_path / "from-file")
    assert resolved(["--config", str(path), "--out", str(tmp_path / "x")]).out == str(
        tmp_path / "x"
    )


def test_json_nulls_keep_the_defaults_and_extra_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"dataset": "ring8", "z_dim": None, "extra": {"note": "x"}}))
    cfg = resolved(["--config", str(path), "--out", str(tmp_path / "r")])
    assert cfg.z_dim == 2 and cfg.extra == {"note": "x"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'dataset = "ring8"\nsteps = "many"',
            "run.toml: argument --steps: invalid int value: 'many'",
        ),
        ('dataset = "ring8"\nloss = "bogus"', "run.toml: argument --loss: invalid choice: 'bogus'"),
        ('dataset = "ring8"\nema = 1.5', "--ema must be in [0, 1), got 1.5"),
        ('dataset = "ring8"\nlr = 0.1', "run.toml: unknown key 'lr'"),
        ('dataset = "ring8"\nstpes = 3', "unknown key 'stpes' (did you mean 'steps'?)"),
        (
            'dataset = "ring8"\nspectral_norm = "yes"',
            "argument --spectral-norm: expected true or false",
        ),
        ('dataset = "ring8"\nwidth = [4]', "argument --width: expected one value"),
        ('dataset = "cifar100"', "--dataset 'cifar100': choose one of"),
        ("dataset = ", "not valid TOML"),
        ("steps = 3", "--dataset is required"),
    ],
)
def test_bad_files_give_the_flags_one_line_errors(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.toml"
    path.write_text(text)
    out = tmp_path / "out"
    assert message in run_error(["--config", str(path), "--out", str(out)], capsys)
    assert not out.exists()


def test_a_bad_value_reads_as_the_flag_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.toml"
    path.write_text('dataset = "ring8"\nsteps = "many"')
    out = ["--out", str(tmp_path / "out")]
    from_flag = run_error(["--dataset", "ring8", "--steps", "many", *out], capsys)
    from_file = run_error(["--config", str(path), *out], capsys)
    assert from_file == from_flag.replace("error: ", f"error: --config {path}: ")


def test_unreadable_or_unknown_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--out", str(tmp_path / "out")]
    assert "cannot read it" in run_error(["--config", str(tmp_path / "none.toml"), *out], capsys)
    (tmp_path / "run.ini").write_text("[x]")
    assert "use a .json, .toml, .yaml, .yml file" in run_error(
        ["--config", str(tmp_path / "run.ini"), *out], capsys
    )
    (tmp_path / "list.json").write_text("[1, 2]")
    assert "expected a table" in run_error(["--config", str(tmp_path / "list.json"), *out], capsys)


def test_out_is_required_somewhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "--out is required" in run_error([*TOY], capsys)
