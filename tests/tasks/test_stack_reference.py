"""docs/stack-reference.md is what the schema says today, and the schema documents every key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from monitoring.stack import schema
from tasks import stack_reference

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_reference_is_current() -> None:
    page = (REPO / stack_reference.PAGE).read_text(encoding="utf-8")
    assert page == stack_reference.render(), (
        f"docs/stack-reference.md is not current: run `make docs` ({stack_reference.COMMAND})")


def test_check_mode_fails_on_a_stale_page(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "ref.md"
    page.write_text(stack_reference.render(), encoding="utf-8")
    assert stack_reference.main(["--check", str(page)]) == 0
    page.write_text(stack_reference.render().replace("Top level", "Top"), encoding="utf-8")
    assert stack_reference.main(["--check", str(page)]) == 1
    assert "make docs" in capsys.readouterr().err


def _models() -> list[type[BaseModel]]:
    return [m for m in vars(schema).values()
            if isinstance(m, type) and issubclass(m, schema.Strict) and m is not schema.Strict]


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.__name__)
def test_every_key_of_the_schema_has_a_description(model: type[BaseModel]) -> None:
    """A new key without a docstring under it would show an empty row in the reference."""
    missing = [name for name, info in model.model_fields.items() if not info.description]
    assert not missing, (f"{model.__name__}: add a docstring under {missing} in "
                         "monitoring/stack/schema.py")


def test_every_section_and_key_is_in_the_reference() -> None:
    page = stack_reference.render()
    for model in _models():
        if model in (schema.Strict,):
            continue
        for name in model.model_fields:
            assert f"| `{name}` |" in page, (model.__name__, name)
    for section in ("`litellm.models.<name>`", "`targets[] (kind: direct)`", "`agents[]`",
                    "`windows.tasks`", "`alertmanager.receivers.email`"):
        assert f"## {section}" in page


def test_types_defaults_and_allowed_values_come_from_the_schema() -> None:
    page = stack_reference.render()
    assert "| `hang_after` | `Duration` |  | `20s` |" in page
    assert "| `max_entries` | `PositiveCount` |  | `1000` |" in page
    assert "| `Port` | integer | >= 1; <= 65535 |" in page
    assert "one of `Domain`, `Private`, `Public`" in page
    assert '`["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]`' in page
    assert "| `version` | `LitellmVersion` |  | required |" in page
