"""Property: a VALID stack with hostile text in every free-text field renders files that parse
in their format and keep the text inert (one value, never code).

The strategy puts a string built from the metacharacters of every format the bundle writes
(shell, PowerShell, YAML, JSON, XML, systemd, Go/Jinja/Grafana templates, GitHub expressions)
into each free-text field and host path of the stack, in the shape the field allows. Each
example is rendered for both OSes; every artifact passes the final check of render (its
format's parser, :mod:`tasks.render.validate`), and the text is found whole in the DECODED
value of the file: in a JSON/YAML string, an XML text, a single-quoted PowerShell literal
(never in an expanding string). A second property runs the real tools (promtool, amtool,
systemd-analyze, sh -n, actionlint) over a few more generated stacks.
"""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring.stack.load import parse_stack
from monitoring.stack.schema import Stack
from tasks.render import render
from tasks.render.common import Rendered
from tasks.render.validate import format_problems, tool_problems
from tests.conftest import STACK_FILE
from tests.support import actionlint
from tests.support.powershell import expandable_strings, problems, verbatim_strings

TEXT = STACK_FILE.read_text(encoding="utf-8")

#: What each format would read as code or as the end of a value.
FRAGMENTS = [
    "'", '"', "`", "$", "$(id)", "${HOME}", "$env:PATH", "${{ github.token }}", "{{ .Values }}",
    "{{ $labels.x }}", "{% raw %}", "%", "%SystemRoot%", "%%", "\\", "<", ">", "&", "&amp;",
    "]]>", "<!--", ";", "|", "#", ": ", "- ", "*a", "&a", "!!python/object", "{", "}", "[",
    "]", ",", "?", "@'", "'@", "\u2018", "\u2019", "\u201a", "\u201b", "\u201c", "é", "中",
    "\u00a0", " ", "--", "-x", "=", "+", "~", "^", "()", "@{}", "//", "/*", "*/", "\\n",
]

hostile = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=6).map("".join)


def _no(chars: str, text: str) -> str:
    return "".join(c for c in text if c not in chars)


def _task(text: str) -> str:
    return f"«T» {_no(chr(92) + '/%', text)} T"


def _win(text: str) -> str:
    """A path component Windows allows (validation refuses <>"|?*%: and slashes)."""
    return "«W» " + _no('<>"|?*%:\\/', text) + " x"


def _posix(text: str) -> str:
    return "«P» " + _no("/", text) + " x"


def _url(text: str) -> str:
    """A URL path of the characters validation allows (RFC 3986 minus quotes and parentheses)."""
    kept = re.sub(r"[^A-Za-z0-9\-._~:/?#@!&*+,;=%]", "", text).replace("%", "%25")
    return f"https://api.example.test/v1/{kept}x"


def _overrides(h: str) -> dict[str, Any]:
    """Every free-text field and host path of the stack, with ``h`` in the shape it allows."""
    return {
        "litellm": {"models": {"groq-70b": {"upstream_model": f"«m» {h}"},
                               "gpt-4": {"api_base": _url(h)}}},
        "targets": [
            {"kind": "litellm", "name": "litellm", "label": f"«L» {h}", "model": "groq-70b"},
            {"kind": "agent", "name": "kilo-code", "label": f"«K» {h}", "provider": f"«p» {h}",
             "model": f"«a» {h}", "is_free": True},
            {"kind": "direct", "name": "openrouter", "label": f"«O» {h}",
             "model": "openrouter-free"},
        ],
        "agents": ["kilo-code", {"name": "mytool", "adapter": "generic-json",
                                 "path": {"linux": f"~/{_posix(h)}/k.json",
                                          "windows": f"~\\{_win(h)}\\k.json"}}],
        "budget": {"free_allow_list": ["kilo-code", "groq-70b", "groq-8b", "openrouter-free"],
                   "provider_config": {"linux": f"/home/{_posix(h)}/p.json",
                                       "windows": f"C:\\{_win(h)}\\p.json"}},
        "windows": {
            "install_root": f"C:\\{_win(h)}",
            "python": f"C:\\{_win(h)}\\python.exe",
            "firewall": {"name": f"«F» {h}", "remote_addresses": ["LocalSubnet", f"«R» {h}"]},
            "tasks": {"folder": f"\\{_task(h)}\\", "litellm": _task(h) + " 1",
                      "watchdog": _task(h) + " 2", "prometheus": _task(h) + " 3",
                      "alertmanager": _task(h) + " 4"},
            "event_log": {"source": f"«S» {h}", "log": f"«G» {h}"},
        },
        "alertmanager": {"receivers": {"webhook": {"url": _url(h)}, "email": {
            "enabled": True, "to": _no("{}", f"«t» {h}"), "sender": _no("{}", f"«s» {h}"),
            "smarthost": "mail.example.test:587", "auth_username": f"«u» {h}",
            "auth_password_env": "PF_SMTP_PASSWORD"}}},
        "grafana": {
            "dashboard": {"uid": "provider-fallback", "title": f"«D» {h}"},
            "datasource": {"uid": "provider-fallback-prom", "name": f"«N» {h}"},
            "provisioning_dir": {"linux": f"/etc/{_posix(h)}/prov",
                                 "windows": f"C:\\{_win(h)}\\prov"},
            "dashboards_dir": {"linux": f"/var/lib/{_posix(h)}/dash",
                               "windows": f"C:\\{_win(h)}\\dash"},
        },
    }


def _stack(h: str) -> Stack:
    return parse_stack(TEXT, overrides=_overrides(h))


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value] if isinstance(value, str) else []


def _decoded(rel: str, data: bytes) -> list[str]:
    """The string values a reader of this format gets from the file."""
    suffix = PurePosixPath(rel).suffix
    if suffix == ".json":
        return _strings(json.loads(data))
    if suffix in (".yml", ".yaml"):
        values = _strings(yaml.safe_load(data))
        if rel.startswith("grafana/provisioning/"):  # Grafana expands $X; $$ is a plain $
            values = [v.replace("$$", "$") for v in values]
        return values
    if suffix == ".xml":
        root = ElementTree.fromstring(data)  # noqa: S314 (our own output)
        return [t for el in root.iter() for t in (el.text or "", *el.attrib.values())]
    if suffix == ".ps1":
        return [lit.value for lit in verbatim_strings(data)]
    return []


#: Where each field's text must arrive whole, by OS: (prefix written by _overrides, files).
LANDS: dict[str, dict[str, set[str]]] = {
    "linux": {"«L» ": {"watchdog/watchdog.json"}, "«K» ": {"watchdog/watchdog.json"},
              "«p» ": {"watchdog/watchdog.json"}, "«m» ": {"litellm/config.yaml"},
              "«D» ": {"grafana/dashboards/provider-fallback.json"},
              "«N» ": {"grafana/provisioning/datasources/provider-fallback.yaml"},
              "«u» ": {"alertmanager/alertmanager.yml"},
              "URL": {"alertmanager/alertmanager.yml", "litellm/config.yaml"}},
    "windows": {"«F» ": {"windows/scripts/firewall.ps1"},
                "«S» ": {"windows/scripts/eventlog.ps1"},
                "«G» ": {"windows/scripts/eventlog.ps1"},
                "«T» ": {"windows/scripts/register-tasks.ps1"}},
}


def _inert(target: str, rendered: Rendered, h: str) -> None:
    """Every file parses (render itself ran format_problems, which raises otherwise); a hostile
    value is found whole in the decoded strings of the files it belongs to, and wherever it
    appears verbatim in a file, it is one decoded value."""
    markers = [f"«{x}» {h}" for x in "LKOpaFRSGDNmu"] + [_win(h), _posix(h), _task(h), _url(h)]
    for rel, artifact in rendered.items():
        if rel.endswith(".ps1"):
            assert problems(artifact.data) == [], rel
            for expanding in expandable_strings(artifact.data):
                assert h not in expanding or len(h) < 3, rel
        values = _decoded(rel, artifact.data)
        text = artifact.data.decode("utf-8")
        for marker in markers:
            if marker in text and values:
                assert any(marker in v for v in values), (rel, marker)
    for prefix, files in LANDS[target].items():
        value = {"«T» ": _task(h), "URL": _url(h).rstrip("/")}.get(prefix, f"{prefix}{h}")
        for rel in files:
            assert any(value in v for v in _decoded(rel, rendered[rel].data)), (rel, value)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(h=hostile)
def test_hostile_text_renders_parsable_and_inert(h: str) -> None:
    stack = _stack(h)
    for target in ("linux", "windows"):
        _inert(target, render(stack, target), h)


def _tools() -> dict[str, str]:
    names = ("promtool", "amtool", "systemd-analyze", "sh")
    found = {name: path for name in names if (path := shutil.which(name))}
    missing = set(names) - set(found)
    if missing:
        pytest.fail(f"not installed: {sorted(missing)} (make tools installs them)")
    return found


@pytest.mark.skipif(actionlint.available() is not None, reason=str(actionlint.available()))
@settings(max_examples=3, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(h=hostile)
def test_the_real_tools_accept_what_hostile_stacks_render(h: str, tmp_path_factory: Any) -> None:
    stack = _stack(h)
    tools = _tools()
    for target in ("linux", "windows"):
        rendered = render(stack, target)
        assert tool_problems(rendered, tools) == []
        if target == "linux":
            workflow = tmp_path_factory.mktemp("wf") / "deploy.yml"
            workflow.write_bytes(rendered["github/deploy-with-fallback.yml"].data)
            assert actionlint.lint(workflow) == []


def test_the_strategy_reaches_every_format() -> None:
    """A guard on the property: the hostile value does land in JSON, YAML, XML and scripts."""
    h = "$(id) '{{ x }}' ${{ y }} <z> %P% `w`"
    landed = {PurePosixPath(rel).suffix for target in ("linux", "windows")
              for rel, a in render(_stack(h), target).items()
              if re.search(re.escape("$(id)"), a.data.decode("utf-8"))}
    assert {".json", ".yaml", ".yml", ".xml", ".ps1"} <= landed


def test_an_artifact_that_does_not_parse_is_caught(tmp_path: Path) -> None:
    """The gate can fail: a broken file of each format is named with its format."""
    stack = parse_stack(TEXT)
    rendered = render(stack, "windows")
    broken = dict(rendered)
    for rel, bad in (("watchdog/watchdog.json", b'{"a": NaN}'),
                     ("litellm/config.yaml", b"a: 1\na: 2\n"),
                     ("windows/tasks/LiteLLM-AutoStart.xml", b"<a><b></a>"),
                     ("windows/scripts/firewall.ps1", b"if ($x { 'unclosed' ")):
        broken[rel] = type(rendered[rel])(bad, rendered[rel].dest)
    found = {p.path[0] for p in format_problems(stack, broken)}
    assert found == {"watchdog/watchdog.json", "litellm/config.yaml",
                     "windows/tasks/LiteLLM-AutoStart.xml", "windows/scripts/firewall.ps1"}
