"""Render: a validated stack and a target OS -> every file the host needs, as bytes.

Pure and deterministic: no clock, no host, no network; the same stack gives the same bytes.
Secret values are the only input from outside the stack; they are passed in explicitly and go
to one user-only file (Linux) and nowhere else. ``python -m tasks.render`` writes the result
under ``build/<os>/`` for review (see :mod:`tasks.render.__main__`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from monitoring.stack.checks import Problem
from monitoring.stack.layout import Layout, TargetOS, host_env_names, layout
from monitoring.stack.schema import Stack
from tasks.render import grafana, litellm, prometheus, systemd, watchdog, windows, workflow
from tasks.render.common import Artifact, Rendered, env_file_line
from tasks.render.validate import BUG, RenderError, format_problems

Component = Callable[[Stack, Layout], Rendered]

#: Which renderers run for which OS, in this order.
COMPONENTS: dict[TargetOS, tuple[Component, ...]] = {
    "linux": (litellm.artifacts, watchdog.artifacts, systemd.artifacts, prometheus.artifacts,
              grafana.artifacts, workflow.artifacts),
    "windows": (litellm.artifacts, watchdog.artifacts, prometheus.artifacts, grafana.artifacts,
                windows.artifacts),
}

SECRETS_REL = "secrets/secrets.env"


def secrets_file(stack: Stack, lay: Layout, secrets: Mapping[str, str]) -> Rendered:
    """The Linux EnvironmentFile with the values of the stack's secret variables that are set.

    Only variables named in the stack are written; unset ones are left out (the units still
    start, and the watchdog reports the missing key as an auth problem).
    """
    if lay.secrets_env is None:
        return {}
    lines = ["# Secrets for provider-fallback, written by the deploy. Mode 0600: keep it so."]
    # Under the host's names (provider keys PF_-prefixed: monitoring.stack.layout.host_env_names).
    lines += [env_file_line(host_name, secrets[name])
              for name, host_name in host_env_names(stack).items() if secrets.get(name)]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    return {SECRETS_REL: Artifact(data, lay.secrets_env, mode=0o600, secret=True)}


def render(stack: Stack, target: TargetOS, secrets: Mapping[str, str] | None = None) -> Rendered:
    """Every artifact for ``target``, keyed by its path relative to ``build/<os>/``.

    Each artifact has passed its format's parser, and no two land on one host path
    (:func:`tasks.render.validate.format_problems`), or :class:`RenderError` says which.
    The real tools run separately (:func:`tasks.render.validate.tool_problems`): they take
    seconds, and render runs in every test.
    """
    lay = layout(stack, target)
    out: Rendered = {}
    try:
        parts = [component(stack, lay) for component in COMPONENTS[target]]
        parts.append(secrets_file(stack, lay, secrets or {}))
    except ValueError as exc:  # a renderer refusing a value its format cannot carry
        raise RenderError([Problem((target,), str(exc),
                                   "a stack value this file can carry (see the message)")]
                          ) from None
    collisions: list[Problem] = []
    for part in parts:
        for rel, artifact in part.items():
            if rel in out:
                collisions.append(Problem((rel,), f"two renderers produce {rel}", BUG))
            out[rel] = artifact
    rendered = dict(sorted(out.items()))
    problems = collisions + format_problems(stack, rendered)
    if problems:
        raise RenderError(problems)
    return rendered
