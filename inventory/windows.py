"""A Windows host over WinRM (`pyinfra inventory/windows.py deploy.py`, from the repo root).

Everything comes from the controller's environment, so this file holds no host name and no
secret:

    WINRM_HOST        the Windows host (name or address its HTTPS certificate is for)
    WINRM_USER        an administrator on it, e.g. WIN-DEV\\pavel (the scheduled tasks run as
                      this account, and its user environment receives the API keys)
    WINRM_PASSWORD    its password (read by the connector; never printed)
    PF_WHEELHOUSE     optional: a directory of wheels for the host (Windows, its Python
                      version), including this project's provider_fallback-*.whl, and
    PF_LOCK_FILE      the hash-pinned lock it was built from. Without both, the deploy builds
                      them itself from locks/ for CPython 3.11 on 64-bit Windows (cached)
    WINRM_CA_BUNDLE   optional: the host's certificate (PEM), when it is self-signed
    PF_STACK_FILE     optional: the stack to deploy (default inventory/stack.yaml); the host
                      suite (tests/host/windows) reads the same variable
    WINRM_TRANSPORT   optional: ntlm (default), kerberos or credssp; the last two need the
                      extra of that name (`make venv WINRM_TRANSPORT=kerberos`)

See the README, "Enable WinRM over HTTPS on the Windows host".
"""

import os

_data = {
    "target_os": "windows",
    "winrm_transport": os.environ.get("WINRM_TRANSPORT") or "ntlm",
}
if os.environ.get("PF_WHEELHOUSE") or os.environ.get("PF_LOCK_FILE"):
    _data["wheelhouse_dir"] = os.environ.get("PF_WHEELHOUSE", "")
    _data["lock_file"] = os.environ.get("PF_LOCK_FILE", "")
if os.environ.get("PF_STACK_FILE"):
    _data["stack_file"] = os.environ["PF_STACK_FILE"]
if os.environ.get("WINRM_CA_BUNDLE"):
    _data["winrm_ca_trust_path"] = os.environ["WINRM_CA_BUNDLE"]

windows = [(f"@winrm/{os.environ.get('WINRM_HOST', 'windows-host.invalid')}", _data)]
