"""The deploy workflow (runbook 6.1-6.3): its steps come from the stack, actionlint passes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from monitoring.stack.layout import Layout, host_env_names
from monitoring.stack.schema import Stack
from tasks.render import workflow
from tasks.render.common import Rendered
from tests.support import actionlint

needs_actionlint = pytest.mark.skipif(actionlint.available() is not None,
                                      reason=str(actionlint.available()))


def test_rendered_for_linux_hosts(rendered_linux: Rendered, rendered_windows: Rendered,
                                  linux_layout: Layout) -> None:
    artifact = rendered_linux[workflow.REL]
    assert artifact.dest == f"{linux_layout.config_dir}/deploy-with-fallback.yml"
    assert workflow.REL not in rendered_windows


def test_steps_follow_the_runbook_and_the_stack(stack: Stack, linux_layout: Layout) -> None:
    data = yaml.safe_load(workflow.artifacts(stack, linux_layout)[workflow.REL].data)
    assert data["on"]["push"] == {"branches": ["main"]}  # quoted key: not YAML 1.1's True
    job = data["jobs"]["deploy"]
    assert job["runs-on"] == workflow.RUNNER_LABELS
    names = [step["name"] for step in job["steps"]]
    assert names == ["Pre-deployment health check (runbook 6.1)",
                     "Check Primary Provider (runbook 6.2)", "Deploy with Provider",
                     "Post-deployment verification (runbook 6.3)"]
    pick = job["steps"][1]["run"]
    assert f"{stack.proxy_url}/health/liveliness" in pick
    assert f"provider={stack.targets[0].name}" in pick
    assert f"provider={stack.targets[1].name}" in pick
    assert job["steps"][3]["run"] == f'"{linux_layout.watchdog_bin}" check'
    # The keys `check` probes with come from the repository's secrets, by name only.
    assert job["env"] == {"PROVIDER_FALLBACK_CONFIG": linux_layout.watchdog_config,
                          **{h: "${{ secrets." + n + " }}"
                             for n, h in host_env_names(stack).items()}}
    assert job["env"]["PF_GROQ_API_KEY"] == "${{ secrets.GROQ_API_KEY }}"


@needs_actionlint
def test_actionlint_passes(stack: Stack, linux_layout: Layout, tmp_path: Path) -> None:
    path = tmp_path / "deploy-with-fallback.yml"
    path.write_bytes(workflow.artifacts(stack, linux_layout)[workflow.REL].data)
    assert actionlint.lint(path) == []


@needs_actionlint
def test_actionlint_can_fail(stack: Stack, linux_layout: Layout, tmp_path: Path) -> None:
    """The linter is real: an output of a step that does not exist is an error."""
    text = workflow.artifacts(stack, linux_layout)[workflow.REL].data.decode()
    path = tmp_path / "broken.yml"
    path.write_text(text.replace("steps.health.outputs", "steps.nope.outputs"))
    errors = actionlint.lint(path)
    assert [e.kind for e in errors] == ["expression"]
    assert "nope" in errors[0].message
