"""The evaluation report (``training.metrics``) as plain-text tables for a terminal or a model card.

Only reads the JSON-ready dict, so it can render a report loaded back from any model.json.
"""

from __future__ import annotations

from typing import Any

SET_LABELS = {"real_test": "real test", "blur_sigma1": "blur s=1", "affine": "affine"}
ROWS = (
    ("FID", "fid"),
    ("KID", "kid"),
    ("precision (k=3)", "precision"),
    ("recall (k=3)", "recall"),
    ("density (k=5)", "density"),
    ("coverage (k=5)", "coverage"),
    ("KL(classes || reference)", "kl_vs_reference_nats"),
    ("mean top-1 confidence", "mean_top1_confidence"),
    ("class agreement", "class_agreement"),
    ("memorised, pixel space", "memorisation.pixel.fraction_closer_than_threshold"),
    ("memorised, feature space", "memorisation.feature.fraction_closer_than_threshold"),
    ("NN distance, pixel (median)", "memorisation.pixel.median_nn_distance"),
    ("NN distance, feature (median)", "memorisation.feature.median_nn_distance"),
)
REALNESS_LABELS = {
    "all_black": "all black",
    "all_white": "all white",
    "mid_grey": "mid grey",
    "uniform_noise": "uniform noise",
    "inverted_real": "inverted real",
    "real_blurred_sigma2": "real blurred s=2",
    "other_dataset": "other dataset",
}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "PASS" if value else "FAIL"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _seed(seed: int) -> str:
    """2000000000 -> 2e9: seed-set columns stay narrow."""
    text = str(seed)
    zeros = len(text) - len(text.rstrip("0"))
    return f"{text[:-zeros]}e{zeros}" if zeros >= 6 else text


def _get(figures: dict[str, Any] | None, dotted: str) -> Any:
    value: Any = figures
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def render_report(report: dict[str, Any], name: str = "") -> str:
    """The report's headline, figure table, targets and realness battery as text."""
    gen = report.get("generated", {})
    seed_sets = gen.get("seed_sets", [])
    classes = gen.get("classes")
    kind = (
        "unconditional"
        if not classes
        else f"class-conditional, {len(classes['names'])} classes, {classes['rule']}"
    )
    out = [
        f"{name or report.get('dataset')}: {report.get('dataset')} {report.get('image')}, {kind}",
        f"generated: {gen.get('n_per_set')} images per seed set, seed sets "
        + ", ".join(f"{a}..{b}" for a, b in seed_sets)
        + f"; truncation {gen.get('truncation')}",
    ]
    classifier = report.get("classifier")
    if classifier:
        out.append(
            f"classifier: {classifier['file']} (sha256 {classifier['sha256'][:12]}...), "
            f"accuracy on real test images {100 * classifier['accuracy_on_real_test']:.2f} %"
        )
    real_pixels = report.get("real_pixels")
    # Every table header repeats it: a table pasted alone must not pass for one on the originals.
    of_real = f" (real images: {real_pixels})" if real_pixels else ""
    if real_pixels:
        out.append(f"real images: {real_pixels}; every figure below is measured against these")
    sizes = report.get("sizes")
    if sizes:
        out.append(
            f"reference: {sizes['reference_real_train']} real training images; real test "
            f"{sizes['real_test']}; memorisation pool {sizes['memorisation_pool_train']} "
            "training images"
        )
    not_computed = report.get("not_computed") or []
    if not_computed:
        out += ["", "not computed:"]
        out += [f"  {', '.join(group['figures'])}: {group['reason']}" for group in not_computed]
    stacked = report.get("stacked_mnist")
    if stacked:
        real = stacked["real"]
        out += [
            "",
            f"Stacked MNIST ({stacked['n']} images, seeds {stacked['seeds'][0]}..{stacked['seeds'][1]}): "
            f"{stacked['modes']} of 1000 modes, KL(p_gen || uniform) {stacked['kl']:.4f}, "
            f"largest mode {100 * stacked['largest_mode_fraction']:.2f} %",
            f"  real stacked test images, scored the same way: {real['modes']} modes, "
            f"KL {real['kl']:.4f}"
            if "modes" in real
            else f"  real stacked test images: not scored ({real.get('unavailable')})",
        ]

    sets = report.get("sets", {})
    if "generated_mean" in sets:
        out += [
            "",
            f"quality in the classifier's feature space, each set against the reference{of_real}",
        ]
        columns = [f"gen {_seed(a)}.." for a, _ in seed_sets] + ["gen mean"]
        columns += [SET_LABELS[k] for k in SET_LABELS if k in sets]
        rows = []
        for label, key in ROWS:
            values = [_get(s, key) for s in sets["generated"]] + [_get(sets["generated_mean"], key)]
            values += [_get(sets[k], key) for k in SET_LABELS if k in sets]
            rows.append([label, *(_fmt(v) for v in values)])
        out += _table(["figure", *columns], rows)
    elif sets.get("generated"):
        out += ["", "pixel statistics of the generated images (no real data to compare with)"]
        rows = [
            [
                f"gen {_seed(a)}..",
                " ".join(_fmt(v) for v in s["channel_mean"]),
                " ".join(_fmt(v) for v in s["channel_std"]),
                _fmt(s["fraction_pixels_0"]),
                _fmt(s["fraction_pixels_255"]),
                _fmt(s["within_set_nn_distance"]["median"]),
                _fmt(s["within_set_nn_distance"]["fraction_duplicates"]),
            ]
            for (a, _), s in zip(seed_sets, sets["generated"], strict=True)
        ]
        header = ["set", "mean", "std", "px=0", "px=255", "NN dist (median)", "duplicates"]
        out += _table(header, rows)

    block = report.get("swd")
    if block:
        swd_pixels = f", {block['real_pixels']}" if block.get("real_pixels") else ""
        out += [
            "",
            f"sliced Wasserstein distance x 1e3 ({block['n_per_set']} images per set; "
            f"reference: {block['reference']}{swd_pixels}); lower is closer",
        ]
        sets = block["sets"]
        names = [f"gen {_seed(a)}.." for a, _ in seed_sets][: len(sets["generated"])]
        swd_sets = [*sets["generated"], sets["generated_mean"]]
        swd_sets += [sets[k] for k in SET_LABELS if k in sets]
        header = ["level", *names, "gen mean", *(SET_LABELS[k] for k in SET_LABELS if k in sets)]
        rows = [
            [f"{res} px", *(_fmt(_get(c, f"per_level.{res}")) for c in swd_sets)]
            for res in block["resolutions"]
        ]
        rows.append(["average", *(_fmt(c.get("average")) for c in swd_sets)])
        out += _table(header, rows)

    summary = report.get("summary")
    if summary:
        issue = summary.get("issue", "issue 13")
        out += [
            "",
            f"targets ({issue}): generated mean over seed sets vs the real-data figure{of_real}",
        ]
        rows = [
            [
                t["target"],
                _fmt(t["value"]),
                SET_LABELS.get(t["reference"], t["reference"]),
                _fmt(t["reference_value"]),
                _fmt(t["ratio"]),
                t["needed"],
                "n/a" if t["pass"] is None else _fmt(t["pass"]),
            ]
            for t in summary["targets"]
        ]
        out += _table(["target", "value", "vs", "ref", "ratio", "needed", ""], rows)
        out.append(f"all quality targets met: {'yes' if summary['all_pass'] else 'no'}")

    realness = report.get("realness")
    if realness:
        targets = realness["targets"]
        out += [
            "",
            f"realness battery (positives: {realness.get('positives') or 'none'}; needed: AUC >= "
            f"{targets['auc_at_least']}, mean realness <= {targets['mean_realness_at_most']})"
            + of_real,
        ]
        if realness.get("other_dataset_left_out"):
            out.append(f"  other dataset left out: {realness['other_dataset_left_out']}")
        rows = [
            [
                REALNESS_LABELS.get(key, key)
                + (f" ({realness['other_dataset']})" if key == "other_dataset" else ""),
                _fmt(entry.get("auc")),
                _fmt(entry["mean_realness"]),
                _fmt(entry.get("pass")),
            ]
            for key, entry in realness["sets"].items()
        ]
        rows += [
            [
                f"generated {_seed(g['seed'])}.. (not targeted)",
                _fmt(g.get("auc")),
                _fmt(g["mean_realness"]),
                "",
            ]
            for g in realness["generated"]
        ]
        out += _table(["set", "AUC", "mean realness", ""], rows)
        if "real_mean_realness" in realness:
            out.append(f"real test images: mean realness {_fmt(realness['real_mean_realness'])}")
            out.append(f"all realness targets met: {'yes' if realness['all_pass'] else 'no'}")
    if "seconds" in report:
        cached = report.get("seconds_real_reference")
        extra = f" (real reference {cached} s, once per process)" if cached is not None else ""
        out += ["", f"seconds: {report['seconds']}{extra}", f"rerun: {report.get('command')}"]
    return "\n".join(out)


def model_card_evaluation(report: dict[str, Any] | None, name: str) -> list[str]:
    """The lines under "## Evaluation" in a model folder's README, from its evaluation report.

    Shared by the exporter (which writes the whole card) and ``training.metrics --write`` (which
    replaces only this section), so an evaluation run after export shows up in the card too.
    """
    rerun = f"python -m training.metrics models/{name} --write"
    if not report:
        return [f"Not evaluated at export (`--no-eval`); run `{rerun}`."]
    return [
        "```text",
        render_report(report, f"models/{name}"),
        "```",
        "",
        "Every figure, per seed set, is under `evaluation` in model.json. "
        f"Rerun: `{rerun}` (EVALUATION.md explains each figure).",
    ]


def replace_card_evaluation(card: str, report: dict[str, Any], name: str) -> str | None:
    """``card`` with everything after its "## Evaluation" heading replaced by ``report``; None
    for a README without that heading (not the exporter's card: a hand-written one is kept)."""
    head, sep, _ = card.partition("\n## Evaluation\n")
    if not sep:
        return None
    return head + sep + "\n" + "\n".join(model_card_evaluation(report, name)) + "\n"
