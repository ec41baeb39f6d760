"""Check the alerts with promtool: ``python deploy/monitoring/check_rules.py`` (needs promtool:
``apt-get install prometheus``, or a Prometheus release's binary on PATH).

prometheus-rules.yaml is a PrometheusRule (the operator's CRD); promtool reads plain rule files
(``groups:``), which is the CRD's ``spec``. So the spec is written to a temporary folder under
the name rules-test.yaml loads, beside a copy of that file, and promtool runs there: one copy of
the rules, never a second hand-kept one. ``--write FILE`` writes the plain rule file for a
Prometheus without the operator.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "prometheus-rules.yaml"
RULES_TEST = HERE / "rules-test.yaml"
GROUPS_FILE = "gan-service.rules.yaml"  # the name rules-test.yaml's rule_files gives


def rule_groups(crd: dict[str, Any]) -> dict[str, Any]:
    """A PrometheusRule -> the plain ``{"groups": [...]}`` that Prometheus and promtool read."""
    if crd.get("apiVersion") != "monitoring.coreos.com/v1" or crd.get("kind") != "PrometheusRule":
        raise ValueError("not a monitoring.coreos.com/v1 PrometheusRule")
    spec = crd["spec"]
    if set(spec) != {"groups"}:
        raise ValueError(f"spec holds more than groups: {sorted(spec)}")
    return {"groups": spec["groups"]}


def load_crd(path: Path = RULES) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def write_groups(crd: dict[str, Any], path: Path) -> None:
    path.write_text(yaml.safe_dump(rule_groups(crd), sort_keys=False, width=100))


def promtool() -> str | None:
    return shutil.which("promtool")


def run_checks(
    crd: dict[str, Any] | None = None, tests: Path = RULES_TEST, tool: str | None = None
) -> list[subprocess.CompletedProcess[str]]:
    """``promtool check rules`` then ``promtool test rules`` on ``crd`` (default: the file's)."""
    tool = tool or promtool()
    if tool is None:
        raise FileNotFoundError("promtool not found: apt-get install prometheus")
    with tempfile.TemporaryDirectory(prefix="gan-rules-") as tmp:
        folder = Path(tmp)
        write_groups(crd if crd is not None else load_crd(), folder / GROUPS_FILE)
        shutil.copy(tests, folder / tests.name)
        results = []
        for args in (["check", "rules", GROUPS_FILE], ["test", "rules", tests.name]):
            results.append(
                subprocess.run(
                    [tool, *args],
                    cwd=folder,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
            )
            if results[-1].returncode != 0:
                break
        return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", type=Path, help="write the plain rule file here and stop")
    args = parser.parse_args()
    if args.write is not None:
        write_groups(load_crd(), args.write)
        return 0
    results = run_checks()
    for result in results:
        print("$ promtool", " ".join(result.args[1:]))
        print(result.stdout + result.stderr, end="")
    return max(r.returncode for r in results)


if __name__ == "__main__":
    sys.exit(main())
