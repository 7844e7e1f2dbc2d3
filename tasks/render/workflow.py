"""The GitHub Actions deploy workflow of runbook 6.1-6.3, rendered from stack.yaml.

``github/deploy-with-fallback.yml`` goes into the repository a user deploys from
(``.github/workflows/``); a copy is kept on the host in the config directory. It is built as
data and dumped (like every machine format here): GitHub's ``${{ ... }}`` expressions are
plain strings and never meet Jinja.

Runbook 6.2 runs ``curl http://localhost:4000/health`` on ``ubuntu-latest``: a GitHub-hosted
runner has no proxy on its localhost, and ``/health`` is a paid call per model that always
answers 200. So the job runs on a self-hosted runner on the host where the stack is deployed
(labels ``self-hosted``, ``linux``; a custom label would need an actionlint config) and:

1. 6.1 pre-deployment health check: ``provider-fallback check`` (proxy and every provider,
   unbilled), reported but not fatal, as in the runbook;
2. 6.2 picks the provider: the primary target (``litellm``) when the proxy's liveness answers,
   else the first fallback target (``kilo-code``), written to ``$GITHUB_OUTPUT``;
3. deploys with it (a placeholder step that echoes the choice, as in the runbook);
4. 6.3 post-deployment verification: ``provider-fallback check`` fails the job when fewer than
   ``watchdog.min_healthy_providers`` (2) are healthy.
"""

from __future__ import annotations

from typing import Any

from monitoring.stack.layout import Layout, host_env_names
from monitoring.stack.schema import Stack
from tasks.render.common import Artifact, Rendered, dump_yaml

REL = "github/deploy-with-fallback.yml"
HEADER = ("# Rendered from stack.yaml by provider-fallback: edit stack.yaml, not this file.\n"
          "# Copy it to .github/workflows/ of the repository you deploy from; it runs on a\n"
          "# self-hosted runner on the host where the provider-fallback stack runs.\n")
RUNNER_LABELS = ["self-hosted", "linux"]


def build(stack: Stack, lay: Layout) -> dict[str, Any]:
    """The workflow as data."""
    cli = lay.watchdog_bin
    config = lay.watchdog_config
    primary, fallback = stack.targets[0].name, stack.targets[1].name
    liveliness = f"{stack.proxy_url}/health/liveliness"
    return {
        "name": "Deploy with Fallback",
        "on": {"push": {"branches": ["main"]}, "workflow_dispatch": {}},
        "permissions": {"contents": "read"},
        "concurrency": {"group": "deploy-with-fallback", "cancel-in-progress": False},
        "jobs": {"deploy": {
            "runs-on": list(RUNNER_LABELS),
            "timeout-minutes": 30,
            # `check` probes with the keys (and the master key) from the environment: the
            # repository's secrets of the stack's names, under the names the host's services
            # use (PF_GROQ_API_KEY...), never written into the workflow.
            "env": {"PROVIDER_FALLBACK_CONFIG": config,
                    **{host: f"${{{{ secrets.{name} }}}}"
                       for name, host in host_env_names(stack).items()}},
            "steps": [
                {"name": "Pre-deployment health check (runbook 6.1)",
                 "run": f'"{cli}" check || echo "not every provider is healthy: deploying '
                        'with the fallback ready"'},
                {"name": "Check Primary Provider (runbook 6.2)", "id": "health",
                 "run": (f'if curl -fsS --max-time 5 "{liveliness}" > /dev/null; then\n'
                         f'  echo "provider={primary}" >> "$GITHUB_OUTPUT"\n'
                         "else\n"
                         f'  echo "provider={fallback}" >> "$GITHUB_OUTPUT"\n'
                         "fi\n")},
                {"name": "Deploy with Provider",
                 "env": {"PROVIDER": "${{ steps.health.outputs.provider }}"},
                 "run": 'echo "Deploying using $PROVIDER"\n'
                        "# Continue deployment with the selected provider\n"},
                {"name": "Post-deployment verification (runbook 6.3)",
                 "run": f'"{cli}" check'},
            ],
        }},
    }


def artifacts(stack: Stack, lay: Layout) -> Rendered:
    """The workflow, kept on the host beside the configs (to copy into a repository)."""
    data = dump_yaml(build(stack, lay), HEADER)
    return {REL: Artifact(data, lay.join(lay.config_dir, "deploy-with-fallback.yml"),
                          mode=0o644)}
