"""The seed's theory claims, measured: JSD saturation on disjoint supports, and vanishing gradients.

    python -m training.theory_figures --out docs/ [--quick]

writes ``OUT/theory-results.json`` (every number), ``OUT/theory-divergences.png``,
``OUT/theory-gradients.png`` and ``OUT/theory.md`` (docs/theory.template.md filled in with
the numbers; ``--render-only`` rewrites it from the JSON without computing).

1. **Disjoint supports** (Arjovsky et al. 2017, Example 1): real data uniform on the segment
   ``{0} x [0, 1]``, generated data on ``{theta} x [0, 1]``. For each theta a near-optimal
   discriminator (the minimax D loss, trained hard) gives ``JSD_hat = (V(D, G) + log 4) / 2``;
   a WGAN-GP critic and a weight-clipped critic give ``E_data f - E_g f``. Then a generator
   that is just theta (``G(z) = (theta, z)``) is trained from theta = 1 under WGAN-GP, and at
   snapshots a fresh near-optimal D re-measures the JSD while the critic reads its estimate.
2. **Gradients as D gets stronger** (Arjovsky & Bottou 2017, Fig. 2): the lab's MLP generator on
   ring8, untrained and after some non-saturating steps, held fixed while a fresh D (the
   lab's MLP) trains; at log-spaced D iterations, the norm of G's gradient under the minimax
   (``log(1 - D)``), the non-saturating (``-log D``) and the WGAN (``-f``) generator losses.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from training import divergences as dv
from training.lab import torch_init
from training.nets import MLPDiscriminator, MLPGenerator
from training.toy import sample

DOCS = Path(__file__).resolve().parents[1] / "docs"
TEMPLATE = DOCS / "theory.template.md"
JSON_NAME, MD_NAME = "theory-results.json", "theory.md"
DIV_PNG, GRAD_PNG = "theory-divergences.png", "theory-gradients.png"
LOG2 = math.log(2.0)


@dataclass(frozen=True)
class Setup:
    """Everything the figures depend on (stored in the JSON)."""

    thetas: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
    critic_width: int = 32  # the 2-layer critics of part 1
    strong_d: dv.CriticSpec = dv.STRONG_D
    clipped: dv.CriticSpec = dv.CLIPPED
    gp: dv.CriticSpec = dv.GP
    n_eval: int = 10_000
    # Part 1b: theta trained from 1 by WGAN-GP (n_critic 5), JSD re-measured at snapshots.
    g_steps: int = 150
    g_lr: float = 1e-2
    n_critic: int = 5
    snapshots: int = 11
    # Part 2: the lab's nets (3 x hidden), ring8, G held fixed while D trains for d_steps.
    hidden: int = 128
    g_stages: tuple[int, ...] = (0, 500)  # non-saturating G steps before D is trained
    d_steps: int = 1000
    d_lr: float = 1e-3
    n_z: int = 1024
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


FULL = Setup()
QUICK = Setup(
    thetas=(0.0, 0.5, 1.0),
    strong_d=replace(FULL.strong_d, steps=40),
    clipped=replace(FULL.clipped, steps=40),
    gp=replace(FULL.gp, steps=40),
    n_eval=1000,
    g_steps=6,
    snapshots=2,
    hidden=16,
    g_stages=(0,),
    d_steps=20,
    n_z=128,
)


# --- part 1: disjoint supports -----------------------------------------------------------------


def theta_sweep(s: Setup) -> list[dict[str, float]]:
    real = dv.line(0.0)
    rows = []
    for theta in s.thetas:
        fake = dv.line(theta)
        rows.append(
            {
                "theta": theta,
                "jsd_true": LOG2 if theta else 0.0,
                "w_true": abs(theta),
                "jsd_hat": dv.jsd_estimate(real, fake, s.strong_d, s.n_eval, s.critic_width),
                "w_gp": dv.em_estimate(real, fake, s.gp, s.n_eval, s.critic_width),
                "w_clipped": dv.em_estimate(real, fake, s.clipped, s.n_eval, s.critic_width),
            }
        )
    return rows


def train_theta(s: Setup) -> list[dict[str, float | None]]:
    """G(z) = (theta, z) trained by WGAN-GP from theta = 1; JSD_hat by a fresh D at snapshots."""
    real = dv.line(0.0)
    theta = torch.tensor([1.0], requires_grad=True)

    def fake(n: int) -> Tensor:
        return dv.line(0.0)(n) + torch.cat([theta, torch.zeros(1)])

    critic = dv.mlp(s.critic_width)
    trainer = dv.CriticTrainer(s.gp, critic)
    opt = torch.optim.Adam([theta], lr=s.g_lr, betas=(0.0, 0.9))
    at = {round(i * s.g_steps / (s.snapshots - 1)) for i in range(s.snapshots)}
    out = []
    for step in range(s.g_steps + 1):
        if step in at:
            with torch.no_grad():
                frozen = float(theta)
            out.append(
                {
                    "g_step": step,
                    "theta": frozen,
                    "w_critic": dv.em_value(critic, real(s.n_eval), fake(s.n_eval))
                    if step
                    else None,
                    "jsd_hat": dv.jsd_estimate(
                        real, dv.line(frozen), s.strong_d, s.n_eval, s.critic_width
                    ),
                }
            )
        if step == s.g_steps:
            break
        for _ in range(s.n_critic):
            trainer.step(real(s.gp.batch), fake(s.gp.batch))
        loss = -critic(fake(s.gp.batch)).mean()  # the WGAN generator loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return out


# --- part 2: the generator's gradient as D trains ----------------------------------------------


def _ring8(seed: int) -> dv.Sampler:
    rng = np.random.default_rng(seed)
    return lambda n: torch.from_numpy(sample("ring8", n, rng))


def pretrain_g(s: Setup, steps: int) -> nn.Module:
    """The lab's G after ``steps`` non-saturating steps against the lab's D (Adam 2e-4)."""
    torch.manual_seed(s.seed)
    G, D = MLPGenerator(2, s.hidden), MLPDiscriminator(hidden=s.hidden)
    torch_init(G)
    torch_init(D)
    d = dv.CriticTrainer(dv.CriticSpec("minimax", lr=2e-4, steps=0), D)
    opt = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = _ring8(s.seed + 1)
    for _ in range(steps):
        with torch.no_grad():
            fake = G(torch.randn(256, 2))
        d.step(real(256), fake)
        loss = nn.functional.softplus(-D(G(torch.randn(256, 2)))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return G


def gradient_curves(s: Setup) -> list[dict[str, Any]]:
    at = dv.log_spaced(s.d_steps, per_decade=4)
    stages = []
    for g_steps in s.g_stages:
        G = pretrain_g(s, g_steps)
        z = torch.randn(s.n_z, 2, generator=torch.Generator().manual_seed(s.seed + 2))
        stage: dict[str, Any] = {"g_steps": g_steps, "d_steps": at}
        for spec, losses in (
            (replace(s.strong_d, lr=s.d_lr, steps=0), ("minimax", "ns")),
            (replace(s.gp, steps=0), ("wgan",)),
            (replace(s.clipped, steps=0), ("wgan",)),
        ):
            torch.manual_seed(s.seed + 3)
            D = MLPDiscriminator(hidden=s.hidden)
            torch_init(D)
            curves = dv.grad_norms_while_d_trains(G, _ring8(s.seed + 4), spec, losses, D, z, 2, at)
            for name in losses:
                key = {"minimax": "minimax", "ns": "ns"}.get(name, spec.loss)
                stage[key] = curves[name]
            stage[f"d_fake_{spec.loss}"] = curves["d_fake"]
        stages.append(stage)
    return stages


# --- report ------------------------------------------------------------------------------------


def compute(s: Setup) -> dict[str, Any]:
    torch.manual_seed(s.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    sweep = theta_sweep(s)
    trained = train_theta(s)
    grads = gradient_curves(s)
    return {
        "meta": {
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "wall_s": round(time.perf_counter() - t0, 1),
            "cpu_s": round(time.process_time() - c0, 1),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "setup": asdict(s),
        },
        "theta_sweep": sweep,
        "train_theta": trained,
        "gradients": grads,
    }


def plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    sweep, trained = result["theta_sweep"], result["train_theta"]
    fig = Figure(figsize=(10, 3.4))
    ax1, ax2 = fig.subplots(1, 2)
    th = [r["theta"] for r in sweep]
    ax1.plot(th, [r["jsd_hat"] for r in sweep], "o-", label="JSD_hat = (V(D,G) + log 4) / 2")
    ax1.plot(th, [r["w_gp"] for r in sweep], "s-", label="W_hat, WGAN-GP critic")
    ax1.plot(th, [r["jsd_true"] for r in sweep], "k:", lw=1, label="true JSD (log 2 if theta != 0)")
    ax1.plot(th, [r["w_true"] for r in sweep], "k--", lw=1, label="true W = |theta|")
    twin = ax1.twinx()
    twin.plot(
        th, [r["w_clipped"] for r in sweep], "^-", c="tab:green", label="W_hat, clipped critic"
    )
    twin.set_ylabel("clipped critic (K * W, right axis)", fontsize=8, color="tab:green")
    twin.tick_params(labelsize=7)
    ax1.set_xlabel("theta (distance between the two segments)", fontsize=8)
    ax1.set_title("Disjoint supports: P_0 = {0} x U[0,1], P_theta = {theta} x U[0,1]", fontsize=9)
    ax1.legend(fontsize=7, loc="upper left")
    ax1.tick_params(labelsize=7)
    steps = [r["g_step"] for r in trained]
    ax2.plot(steps, [r["jsd_hat"] for r in trained], "o-", label="JSD_hat (fresh near-optimal D)")
    ax2.plot(
        steps[1:], [r["w_critic"] for r in trained[1:]], "s-", label="W_hat (the training critic)"
    )
    ax2.plot(steps, [abs(r["theta"]) for r in trained], "k--", lw=1, label="|theta| = true W")
    ax2.axhline(LOG2, c="k", ls=":", lw=1)
    ax2.set_xlabel("generator step (WGAN-GP, G(z) = (theta, z))", fontsize=8)
    ax2.set_title("Over training of G: JSD stays at log 2, W falls", fontsize=9)
    ax2.legend(fontsize=7)
    ax2.tick_params(labelsize=7)
    fig.tight_layout(pad=0.5)
    fig.savefig(out / DIV_PNG, dpi=90)

    stages = result["gradients"]
    fig = Figure(figsize=(5 * len(stages), 3.6))
    axes = fig.subplots(1, len(stages), squeeze=False)[0]
    for ax, st in zip(axes, stages, strict=True):
        for key, label in (
            ("minimax", "minimax G loss  log(1 - D(G(z)))"),
            ("ns", "non-saturating  -log D(G(z))"),
            ("wgan-gp", "WGAN  -f(G(z)), GP critic"),
            ("wgan", "WGAN  -f(G(z)), clipped critic"),
        ):
            ax.loglog(st["d_steps"], st[key], "o-", ms=3, label=label)
        ax.set_xlabel("discriminator iterations (G fixed)", fontsize=8)
        ax.set_ylabel("||grad of G's loss wrt G's weights||", fontsize=8)
        ax.set_title(f"ring8, G after {st['g_steps']} ns steps", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout(pad=0.5)
    fig.savefig(out / GRAD_PNG, dpi=90)


def _g(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def render(result: dict[str, Any], command: str) -> str:
    sweep, trained, stages = result["theta_sweep"], result["train_theta"], result["gradients"]
    s = result["meta"]["setup"]
    table = [
        "| theta | true JSD | JSD_hat | true W | W_hat (GP) | W_hat (clipped) |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {r['theta']:g} | {r['jsd_true']:.3f} | {r['jsd_hat']:.3f} | {r['w_true']:g} "
            f"| {r['w_gp']:.3f} | {r['w_clipped']:.2e} |"
            for r in sweep
        ),
    ]
    g_table = [
        "| G step | theta | JSD_hat | W_hat (critic) |",
        "| --- | --- | --- | --- |",
        *(
            f"| {r['g_step']} | {r['theta']:.3f} | {r['jsd_hat']:.3f} | {_g(r['w_critic'])} |"
            for r in trained
        ),
    ]
    grad_lines = []
    for st in stages:
        first = {k: st[k][0] for k in ("minimax", "ns", "wgan-gp", "wgan")}
        peak_mm = max(st["minimax"])
        last = {k: st[k][-1] for k in ("minimax", "ns", "wgan-gp", "wgan")}
        grad_lines.append(
            f"| {st['g_steps']} | {_g(first['minimax'])} → {_g(peak_mm)} → {_g(last['minimax'])} "
            f"| {_g(first['ns'])} → {_g(last['ns'])} | {_g(first['wgan-gp'])} → {_g(last['wgan-gp'])} "
            f"| {_g(first['wgan'])} → {_g(last['wgan'])} | {_g(st['d_fake_minimax'][-1])} |"
        )
    bullets = []
    for st in stages:
        mm, peak = st["minimax"], max(st["minimax"])
        bullets.append(
            f"G after {st['g_steps']} ns steps: the minimax gradient peaks at {_g(peak)} and ends at "
            f"{_g(mm[-1])} ({peak / mm[-1]:,.0f}x down) while the mean D(G(z)) falls to "
            f"{_g(st['d_fake_minimax'][-1])}; the non-saturating gradient ends at {_g(st['ns'][-1])} "
            f"({st['ns'][-1] / st['ns'][0]:,.0f}x its start)"
        )
    late = [r for r in trained if r["g_step"] >= 0.3 * s["g_steps"] and r["theta"] > 0]
    positive = [r for r in sweep if r["theta"] > 0]
    far = [r for r in positive if r["theta"] >= 0.1]
    slope = np.polyfit([r["theta"] for r in positive], [r["w_gp"] for r in positive], 1)[0]
    return Template(TEMPLATE.read_text()).substitute(
        command=command,
        finished=result["meta"]["finished"],
        wall_s=f"{result['meta']['wall_s']:.0f}",
        cpu_s=f"{result['meta']['cpu_s']:.0f}",
        torch=result["meta"]["torch"],
        theta_table="\n".join(table),
        g_table="\n".join(g_table),
        grad_table="\n".join(grad_lines),
        d_steps=s["strong_d"]["steps"],
        d_lr=f"{s['strong_d']['lr']:g}",
        critic_width=s["critic_width"],
        jsd_far_min=f"{min(r['jsd_hat'] for r in far):.3f}",
        jsd_far_max=f"{max(r['jsd_hat'] for r in far):.3f}",
        jsd_zero=f"{sweep[0]['jsd_hat']:.4f}",
        w_slope=f"{slope:.2f}",
        theta_end=f"{trained[-1]['theta']:.3f}",
        jsd_train_min=f"{min(r['jsd_hat'] for r in trained if abs(r['theta']) >= 0.1):.3f}",
        g_steps=s["g_steps"],
        grad_bullets="; ".join(bullets),
        theta_max=f"{max(r['theta'] for r in trained):.3f}",
        late_step=late[0]["g_step"],
        w_track=f"{max(abs(r['w_critic'] - abs(r['theta'])) for r in late if r['w_critic'] is not None):.3f}",
        jsd_near=", ".join(
            f"{r['jsd_hat']:.3f} at θ = {r['theta']:g}" for r in positive if r["theta"] < 0.1
        ),
        grad_d_steps=s["d_steps"],
        grad_d_lr=f"{s['d_lr']:g}",
        hidden=s["hidden"],
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.theory_figures", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, default=Path("docs"), help="default %(default)s")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the figures and markdown from the JSON"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # tiny nets: intra-op threads only add synchronisation
    if args.render_only:
        result = json.loads((args.out / JSON_NAME).read_text())
    else:
        command = "python -m training.theory_figures " + " ".join(
            sys.argv[1:] if argv is None else argv
        )
        result = compute(QUICK if args.quick else FULL)
        result["meta"]["command"] = command.strip()
        result["meta"]["quick"] = args.quick
        (args.out / JSON_NAME).write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    plot(result, args.out)
    (args.out / MD_NAME).write_text(render(result, result["meta"]["command"]))
    print(
        f"wrote {', '.join(str(args.out / n) for n in (JSON_NAME, DIV_PNG, GRAD_PNG, MD_NAME))} "
        f"in {result['meta']['wall_s']:.0f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
