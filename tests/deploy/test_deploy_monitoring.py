"""deploy/monitoring: the PrometheusRule checked and unit-tested by promtool, the Grafana
dashboard's shape and PromQL, and every metric either uses found in a real ``bentoml serve``
scrape (with two workers and a broken model: one gan_model_info series per folder)."""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml
from deploy_support import REPO
from fixtures.real_data import in_ci
from prometheus_client.parser import text_string_to_metric_families

MONITORING = REPO / "deploy" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"


def _load_check_rules() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_rules", MONITORING / "check_rules.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_rules = _load_check_rules()


@pytest.fixture(scope="module")
def promtool() -> str:
    tool = check_rules.promtool()
    if tool is None:
        reason = "promtool not found (apt-get install prometheus)"
        if in_ci():
            pytest.fail(f"{reason}; CI must provide it (.ci/run)", pytrace=False)
        pytest.skip(reason)
    return str(tool)


def _output(results: list[subprocess.CompletedProcess[str]]) -> str:
    return "\n".join(f"$ {' '.join(r.args)}\n{r.stdout}{r.stderr}" for r in results)


def _alerts(crd: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in crd["spec"]["groups"] for r in g["rules"] if "alert" in r]


# --- the rules ---------------------------------------------------------------------------------


def test_rules_are_a_prometheus_rule() -> None:
    crd = check_rules.load_crd()
    assert crd["apiVersion"] == "monitoring.coreos.com/v1" and crd["kind"] == "PrometheusRule"
    assert crd["metadata"]["name"]
    names = [a["alert"] for a in _alerts(crd)]
    assert len(names) == len(set(names))
    # The four, at least: broken models, error rate, p99 latency, realness drift.
    assert {"GanModelBroken", "GanHighErrorRate", "GanHighLatencyP99", "GanRealnessDrift"} <= set(
        names
    )
    for alert in _alerts(crd):
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}
        assert {"summary", "description", "runbook"} <= set(alert["annotations"])


def test_every_alert_has_a_runbook_section() -> None:
    doc = (REPO / "docs" / "monitoring.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in doc.splitlines()
        if line.startswith("#")
    }
    for alert in _alerts(check_rules.load_crd()):
        path, _, anchor = alert["annotations"]["runbook"].partition("#")
        assert path == "docs/monitoring.md" and anchor in anchors, alert["alert"]


def test_promtool_checks_and_unit_tests_pass(promtool: str) -> None:
    results = check_rules.run_checks(tool=promtool)
    assert [r.returncode for r in results] == [0, 0], _output(results)
    assert "SUCCESS" in results[1].stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(check_rules.RULES_TEST.read_text())
    cases: dict[str, set[bool]] = {}
    for test in tests["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    for alert in _alerts(check_rules.load_crd()):
        assert cases.get(alert["alert"]) == {True, False}, alert["alert"]


@pytest.mark.slow  # two promtool runs per alert, ~4 s each (the drift test spans 26 hours)
@pytest.mark.parametrize("alert", [a["alert"] for a in _alerts(check_rules.load_crd())])
def test_unit_tests_fail_when_an_alert_is_lost_or_always_fires(promtool: str, alert: str) -> None:
    """The unit tests can fail: without the alert, or with its condition always true."""
    crd = check_rules.load_crd()
    for mutate in ("drop", "always"):
        mutated = copy.deepcopy(crd)
        for group in mutated["spec"]["groups"]:
            rules = group["rules"]
            index = next(i for i, r in enumerate(rules) if r.get("alert") == alert)
            if mutate == "drop":
                del rules[index]
            else:  # every threshold always met (-Inf * x is -Inf too), no waiting
                rule = rules[index]
                rule["expr"] = re.sub(r"(>=|>|<)\s*[0-9.]+", "> -Inf", rule["expr"])
                rule.pop("for", None)
        results = check_rules.run_checks(mutated, tool=promtool)
        check, test = results  # the mutated rules are valid: only the unit tests may object
        assert check.returncode == 0 and test.returncode != 0, f"{mutate}: {_output(results)}"


# --- the dashboard -----------------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_dashboard_is_a_grafana_dashboard() -> None:
    dash = _dashboard()
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dash["uid"])
    assert dash["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    source = variables["datasource"]
    assert source["type"] == "datasource" and source["query"] == "prometheus"
    ids = [p["id"] for p in _panels(dash)]
    assert len(ids) == len(set(ids))
    graphs = [p for p in _panels(dash) if p["type"] != "row"]
    assert len(graphs) >= 10
    for panel in graphs:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"]["uid"] == "${datasource}"
    # Nothing overlaps: each panel's cells are its own.
    cells: set[tuple[int, int]] = set()
    for panel in _panels(dash):
        g = panel["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, panel["title"]
        cells |= mine


GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$job": ".*", "$model": ".*"}


def _dashboard_exprs() -> list[str]:
    exprs = []
    for panel in _panels(_dashboard()):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            exprs.append(expr)
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["definition"])
            assert inner, variable["name"]
            exprs.append(inner.group(1).replace("$job", ".*"))
    return exprs


def test_dashboard_promql_parses(promtool: str, tmp_path: Path) -> None:
    """promtool parses PromQL only inside rule files: the panels' queries as recording rules."""
    exprs = _dashboard_exprs()
    assert not [e for e in exprs if "$" in e], "a Grafana variable left unreplaced"
    rules = [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    broken = copy.deepcopy(rules)
    broken[0]["expr"] = broken[0]["expr"].replace("(", "", 1)  # the check can fail
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": broken}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, check=False
    )
    assert result.returncode != 0


# --- names against a real scrape ---------------------------------------------------------------

METRIC_NAME = re.compile(r"\b(?:gan|bentoml)_[a-zA-Z0-9_]+")


def used_names() -> dict[str, set[str]]:
    """Metric names in the rules and the dashboard -> where they are used."""
    uses: dict[str, set[str]] = {}
    for alert in _alerts(check_rules.load_crd()):
        for name in METRIC_NAME.findall(alert["expr"]):
            uses.setdefault(name, set()).add(alert["alert"])
    for expr in _dashboard_exprs():
        for name in METRIC_NAME.findall(expr):
            uses.setdefault(name, set()).add("dashboard")
    return uses


def unknown_names(uses: dict[str, set[str]], exposition: str) -> dict[str, set[str]]:
    scraped = {s.name for f in text_string_to_metric_families(exposition) for s in f.samples}
    return {name: where for name, where in uses.items() if name not in scraped}


def test_unknown_names_reports_what_the_scrape_lacks() -> None:
    exposition = (
        "# TYPE gan_x_seconds histogram\n"
        'gan_x_seconds_bucket{le="+Inf"} 1\ngan_x_seconds_count 1\ngan_x_seconds_sum 1\n'
        "# TYPE gan_y counter\ngan_y_total 1\n"
    )
    uses = {"gan_x_seconds_bucket": {"a"}, "gan_y_total": {"b"}, "gan_y": {"c"}, "gan_z": {"d"}}
    assert unknown_names(uses, exposition) == {"gan_y": {"c"}, "gan_z": {"d"}}


OPERATOR_TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container"}


@pytest.fixture(scope="module")
def scrape(
    conditional_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """bentoml serve (2 workers, tiny-a/b/c plus a broken folder) after API traffic."""
    from integration.server_process import launch, wait_ready

    models = tmp_path_factory.mktemp("monitoring") / "models"
    shutil.copytree(conditional_models_dir, models)
    shutil.copytree(models / "tiny-b", models / "tiny-broken")
    with (models / "tiny-broken" / "generator.onnx").open("ab") as f:
        f.write(b"\0")
    server = launch(models, tmp_path_factory.mktemp("monitoring-home"), {"GAN_WORKERS": "2"})
    try:
        wait_ready(server)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for seed in range(6):  # spread over both workers
                reply = client.post("/generate", json={"seed": seed, "n": 2})
                assert reply.status_code == 200, reply.text
            png = base64.b64decode(reply.json()["images"][0]["png"])
            files = [("images", (f"{i}.png", png, "image/png")) for i in range(3)]
            assert client.post("/score", files=files).status_code == 200
            reply = client.post("/interpolate", json={"seed_a": 1, "seed_b": 2, "steps": 4})
            assert reply.status_code == 200
            assert client.post("/generate", content=b"{bad").status_code == 400
            assert client.get("/models").status_code == 200
            # /readyz answers once one worker is up: wait for the second one's start
            deadline = time.monotonic() + 60
            while True:
                exposition = client.get("/metrics").text
                if "gan_worker_starts_total 2.0" in exposition or time.monotonic() > deadline:
                    break
                time.sleep(0.25)
        yield {"exposition": exposition, "models": models}
    finally:
        server.stop()


@pytest.mark.integration
def test_every_metric_used_is_in_a_real_scrape(scrape: dict[str, Any]) -> None:
    uses = used_names()
    # The extraction finds the names (a broken regex would make this test pass vacuously).
    assert {"gan_model_info", "gan_realness_sum", "gan_http_request_seconds_bucket"} <= set(uses)
    assert unknown_names(uses, scrape["exposition"]) == {}


@pytest.mark.integration
def test_model_info_one_series_per_folder_with_two_workers(scrape: dict[str, Any]) -> None:
    from contract.manifest import read_manifest
    from service.model_info import manifest_version

    families = {f.name: f for f in text_string_to_metric_families(scrape["exposition"])}
    samples = families["gan_model_info"].samples
    folders = sorted(p.name for p in scrape["models"].iterdir() if p.is_dir())
    assert sorted(s.labels["model"] for s in samples) == folders  # no per-worker copies
    for sample in samples:
        assert sample.value == 1 and "pid" not in sample.labels
        manifest = read_manifest(scrape["models"] / sample.labels["model"])
        assert sample.labels["version"] == manifest_version(manifest.raw)
        assert sample.labels["sha256"] == manifest.generator.sha256
        broken = sample.labels["model"] == "tiny-broken"
        assert sample.labels["state"] == ("broken" if broken else "loaded")
    (broken_count,) = families["gan_models_broken"].samples
    assert broken_count.value == 1
    (starts,) = [s for s in families["gan_worker_starts"].samples if s.name.endswith("_total")]
    assert starts.value == 2


@pytest.mark.integration
def test_scraped_labels_leave_the_targets_labels_alone(scrape: dict[str, Any]) -> None:
    """The ServiceMonitor's honorLabels keeps our endpoint label; it must not let the service
    override what identifies a target."""
    labels = {
        name
        for family in text_string_to_metric_families(scrape["exposition"])
        for sample in family.samples
        for name in sample.labels
    }
    assert "endpoint" in labels
    assert not labels & OPERATOR_TARGET_LABELS
    monitor = yaml.safe_load(
        (REPO / "deploy/k8s/components/servicemonitor/servicemonitor.yaml").read_text()
    )
    assert all(e["honorLabels"] is True for e in monitor["spec"]["endpoints"])
