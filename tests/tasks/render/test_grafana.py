"""Render of the Grafana files: paths, destinations, bytes, determinism, host overrides."""

from __future__ import annotations

import json

import pytest
import yaml

from monitoring.content import grafana as grafana_provisioning
from monitoring.stack.layout import TARGET_OSES, TargetOS, layout
from monitoring.stack.load import parse_stack
from monitoring.stack.schema import Stack
from tasks.render import dashboard, grafana
from tasks.render.common import Rendered
from tests.conftest import STACK_FILE

DATASOURCE = "grafana/provisioning/datasources/provider-fallback.yaml"
PROVIDER = "grafana/provisioning/dashboards/provider-fallback.yaml"


def _render(stack: Stack, target: TargetOS) -> Rendered:
    return grafana.artifacts(stack, layout(stack, target))


@pytest.mark.parametrize("target", TARGET_OSES)
def test_three_files_at_their_layout_destinations(stack: Stack, target: TargetOS) -> None:
    lay = layout(stack, target)
    out = grafana.artifacts(stack, lay)
    board = f"grafana/dashboards/{stack.grafana.dashboard.uid}.json"
    assert set(out) == {DATASOURCE, PROVIDER, board}
    assert out[DATASOURCE].dest == lay.grafana_datasource
    assert out[PROVIDER].dest == lay.grafana_dashboard_provider
    assert out[board].dest == lay.grafana_dashboard
    for artifact in out.values():
        assert artifact.mode == 0o644
        assert not artifact.secret


@pytest.mark.parametrize("target", TARGET_OSES)
def test_bytes_are_the_builders_data(stack: Stack, target: TargetOS) -> None:
    lay = layout(stack, target)
    out = grafana.artifacts(stack, lay)
    assert yaml.safe_load(out[DATASOURCE].data) == grafana_provisioning.datasource(stack)
    assert yaml.safe_load(out[PROVIDER].data) == grafana_provisioning.dashboards(stack, lay)
    board = out[grafana.dashboard_rel(stack)].data
    assert json.loads(board) == dashboard.build(stack)
    assert board.endswith(b"\n")
    assert "→".encode() in board  # the runbook's legend arrow, as UTF-8, not \u2192


def test_yaml_files_say_where_to_edit(stack: Stack) -> None:
    out = _render(stack, "linux")
    for rel in (DATASOURCE, PROVIDER):
        assert out[rel].data.startswith(b"# Rendered from stack.yaml")


def test_dashboard_is_the_same_for_linux_and_windows(stack: Stack) -> None:
    rel = grafana.dashboard_rel(stack)
    assert _render(stack, "linux")[rel].data == _render(stack, "windows")[rel].data
    assert _render(stack, "linux")[DATASOURCE].data == _render(stack, "windows")[DATASOURCE].data


@pytest.mark.parametrize("target", TARGET_OSES)
def test_rendering_twice_gives_identical_bytes(stack: Stack, target: TargetOS) -> None:
    fresh = parse_stack(STACK_FILE.read_text(encoding="utf-8"))
    first, second, third = _render(stack, target), _render(stack, target), _render(fresh, target)
    assert {k: v.data for k, v in first.items()} == {k: v.data for k, v in second.items()}
    assert {k: v.data for k, v in first.items()} == {k: v.data for k, v in third.items()}


def test_title_override_changes_only_the_dashboard_title(stack: Stack) -> None:
    other = parse_stack(STACK_FILE.read_text(encoding="utf-8"),
                        overrides={"grafana": {"dashboard": {"title": "Laptop fallback"}}})
    before, after = _render(stack, "linux"), _render(other, "linux")
    assert set(before) == set(after)
    rel = grafana.dashboard_rel(stack)
    for key in set(before) - {rel}:
        assert before[key] == after[key], key
    old, new = json.loads(before[rel].data), json.loads(after[rel].data)
    assert new["title"] == "Laptop fallback"
    assert {k: v for k, v in old.items() if k != "title"} == \
        {k: v for k, v in new.items() if k != "title"}


def test_uid_override_moves_the_file_and_its_destination(stack: Stack) -> None:
    other = parse_stack(STACK_FILE.read_text(encoding="utf-8"),
                        overrides={"grafana": {"dashboard": {"uid": "pf-laptop"}}})
    lay = layout(other, "linux")
    out = grafana.artifacts(other, lay)
    assert out["grafana/dashboards/pf-laptop.json"].dest == lay.grafana_dashboard
    assert lay.grafana_dashboard.endswith("pf-laptop.json")
    assert json.loads(out["grafana/dashboards/pf-laptop.json"].data)["uid"] == "pf-laptop"


@pytest.mark.parametrize("fixture", ["rendered_linux", "rendered_windows"])
def test_full_render_includes_the_grafana_files(stack: Stack, fixture: str,
                                                request: pytest.FixtureRequest) -> None:
    rendered: Rendered = request.getfixturevalue(fixture)
    target: TargetOS = "linux" if fixture == "rendered_linux" else "windows"
    for rel, artifact in _render(stack, target).items():
        assert rendered[rel] == artifact
