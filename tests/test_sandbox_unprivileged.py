"""The hostile-candidate probes again, run by an unprivileged caller (``nobody``).

The sandbox takes another path when its caller is not root (a user namespace instead of a
dedicated uid), so every probe file is re-run as ``nobody`` in a pytest of its own.  That
user must reach the interpreter, the virtual environment, the checkout and the shared data,
which may sit under a private home (pyenv in ``/root``, mode 700).  Nothing on the host
changes: a helper takes a private mount namespace, lays a tmpfs over each locked ancestor
directory there, binds the needed folders back into it, and only then drops to ``nobody``.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shared_utils.paths import REPO_ROOT, shared_data_dir

USER, GROUP = "nobody", "nogroup"
PROBE_FILES = ["test_sandbox_hostile.py", "test_sandbox_hostile_verdicts.py", "test_sandbox_legit.py"]
SETUP_FAILED = 77

# Runs as root in a fresh process: private mount namespace, tmpfs over the locked ancestors,
# the needed folders bound back (through O_PATH descriptors taken before they were covered),
# then exec the command as the unprivileged user.
PRIVATE_VIEW = """
import json, os, sys
from shared_utils.sandbox import kernel
covers, needed, command = json.loads(sys.argv[1])
try:
    kernel.unshare(kernel.CLONE_NEWNS)
    kernel.mount(None, '/', None, kernel.MS_REC | kernel.MS_PRIVATE)
    handles = {path: os.open(path, os.O_PATH) for path in needed}
    for cover in covers:
        kernel.mount('tmpfs', cover, 'tmpfs', kernel.MS_NOSUID | kernel.MS_NODEV, 'mode=755,size=1m')
    for path, handle in handles.items():
        os.makedirs(path, exist_ok=True)
        kernel.mount(f'/proc/self/fd/{handle}', path, None, kernel.MS_BIND | kernel.MS_REC)
        os.close(handle)
except OSError as exc:
    print(f'cannot build the unprivileged view: {exc}', file=sys.stderr)
    sys.exit(%d)
os.execvp(command[0], command)
""" % SETUP_FAILED


def _locked_ancestor(path: Path) -> Path | None:
    """The outermost folder above ``path`` that others may not enter."""
    for folder in reversed(path.parents):
        if not os.stat(folder).st_mode & 0o001:
            return folder
    return None


def _view(needed: list[Path]) -> tuple[list[str], list[str]]:
    """Covers (locked ancestors, outermost only) and the needed folders to bind under them."""
    covers = {ancestor for path in needed if (ancestor := _locked_ancestor(path))}
    covers = {c for c in covers if not any(other in c.parents for other in covers)}
    hidden = sorted({p for p in needed if any(c in p.parents for c in covers)}, key=lambda p: len(p.parts))
    outermost = [p for i, p in enumerate(hidden) if not any(q in p.parents for q in hidden[:i])]
    return sorted(map(str, covers)), list(map(str, outermost))


@pytest.fixture(scope="module")
def unprivileged_home(tmp_path_factory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("already unprivileged: the probe files themselves are the unprivileged run")
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    try:
        user = pwd.getpwnam(USER)
    except KeyError:
        pytest.skip(f"no {USER!r} account on this machine")
    home = tmp_path_factory.mktemp("unprivileged")
    os.chown(home, user.pw_uid, user.pw_gid)
    return home


@pytest.mark.parametrize("probe_file", PROBE_FILES)
def test_probes_hold_for_an_unprivileged_caller(probe_file, unprivileged_home):
    data = shared_data_dir()
    needed = [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), REPO_ROOT.resolve(), unprivileged_home]
    private = [str(path) for path in needed[:3] if not os.stat(path).st_mode & 0o001]  # the home is nobody's
    if private:  # a folder's own mode survives a bind; only its ancestors can be covered
        pytest.skip(f"{private} cannot be entered by other users (a checkout in a private folder)")
    covers, binds = _view(needed + ([data.resolve()] if data else []))
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(unprivileged_home),
                   "TMPDIR": str(unprivileged_home), "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1",
                   "LANG": "C.UTF-8"}
    pytest_run = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "-o", "addopts=",
                  "--basetemp", str(unprivileged_home / probe_file.removesuffix(".py")),
                  str(Path(__file__).with_name(probe_file))]
    command = ["setpriv", f"--reuid={USER}", f"--regid={GROUP}", "--clear-groups", "env", "-i",
               *(f"{key}={value}" for key, value in environment.items()), *pytest_run]
    result = subprocess.run([sys.executable, "-c", PRIVATE_VIEW, json.dumps([covers, binds, command])],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    if result.returncode == SETUP_FAILED:
        pytest.skip(result.stderr.strip().splitlines()[-1])
    failed = re.findall(r"^(?:FAILED|ERROR) \S+?::(.+?)(?: - .*)?$", result.stdout, re.M)
    summary = result.stdout.strip().splitlines()[-1:] + result.stderr.strip().splitlines()[-3:]
    assert result.returncode == 0, f"as {USER}: {failed or summary}"
