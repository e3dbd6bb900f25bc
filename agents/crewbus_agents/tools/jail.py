"""The `python` tool's jail: bubblewrap (Debian `bubblewrap`, the `bwrap` command) around
the snippet's process.

Inside the jail a snippet has no network (an empty network namespace of its own), a
read-only system (/usr, /bin, /lib*, the Python installation and the loader's cache, and
nothing else of the host: not the service's home, data directory or credentials), the
task's workspace as the only writable place, its own PID namespace with its own /proc, and
a clean environment. When the executor runs as root the jail keeps only the capabilities
to change user, and the snippet drops to `python_sandbox_uid` before it runs, so RLIMIT_NPROC
(which never binds root) bounds a fork bomb; otherwise the jail is a user namespace of its
own, where RLIMIT_NPROC counts the jail's processes only.

Whether bwrap works is checked once per interpreter, by running it (the kernel or a policy
may forbid the namespaces it needs).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""Read-only in the jail (a merged-/usr link is recreated as a link)."""
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime")
"""What the dynamic loader and `time` read; no other file of /etc is in the jail."""
ROOT_CAPS = ("CAP_SETUID", "CAP_SETGID")
"""All a jail started by root keeps, for the snippet to drop to its own user (then none)."""


class JailUnavailable(RuntimeError):
    """`python_sandbox` is `bwrap` but bubblewrap is missing or cannot run here."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"CREWBUS_TOOLS_PYTHON_SANDBOX=bwrap but the jail cannot run: {reason}; install "
            "bubblewrap, allow user namespaces, or choose auto (a warned fallback) or none")


@dataclass(frozen=True)
class JailCheck:
    """Whether the jail runs on this machine; `detail` says why not, or which bwrap."""

    usable: bool
    detail: str


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


def interpreter(site_packages: bool) -> str:
    """The Python a snippet runs: the installation's own binary, or this environment's (a
    virtualenv's, to find its site-packages) when snippets may import packages."""
    return sys.executable if site_packages else os.path.realpath(sys.executable)


def drops_privileges() -> bool:
    """Root runs the jail privileged and the snippet drops to its own user inside."""
    return os.geteuid() == 0


def jail_argv(
    bwrap: str, workspace: Path, env: Mapping[str, str], site_packages: bool
) -> list[str]:
    """The bwrap prefix of a snippet's command: namespaces, mounts, environment. The
    command enters the workspace itself (a root jail cannot before it changes user)."""
    argv = [bwrap, "--die-with-parent", "--new-session",
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try"]
    if drops_privileges():
        argv += ["--cap-drop", "ALL"]
        for cap in ROOT_CAPS:
            argv += ["--cap-add", cap]
    else:
        argv += ["--unshare-user", "--disable-userns"]
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        else:
            argv += ["--ro-bind-try", path, path]
    for path in SYSTEM_FILES:
        argv += ["--ro-bind-try", path, path]
    made: set[str] = set()
    for prefix in _python_prefixes(site_packages):
        argv += [*_parents(prefix, made), "--ro-bind", prefix, prefix]
    place = str(workspace)
    argv += ["--proc", "/proc", "--dev", "/dev", *_parents(place, made), "--bind", place, place,
             "--remount-ro", "/", "--chdir", "/", "--clearenv"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return [*argv, "--"]


def _parents(path: str, made: set[str]) -> list[str]:
    """Empty, traversable directories down to `path` (bwrap would make them 0700, closed to
    the snippet's user); nothing of the host's directories of those names is visible."""
    argv: list[str] = []
    for parent in reversed(Path(path).parents[:-1]):
        name = str(parent)
        if name not in made and not name.startswith("/usr/"):
            made.add(name)
            argv += ["--perms", "0755", "--dir", name]
    return argv


def _python_prefixes(site_packages: bool) -> list[str]:
    """The installation (and the virtualenv, for its packages) unless /usr already has it."""
    wanted = [sys.base_prefix, *([sys.prefix] if site_packages else [])]
    prefixes: list[str] = []
    for prefix in map(os.path.realpath, wanted):
        if not any(prefix == d or prefix.startswith(d + "/") for d in ("/usr", *prefixes)):
            prefixes.append(prefix)
    return prefixes


def check_jail(site_packages: bool = False) -> JailCheck:
    """Whether a snippet can run in the jail here (bwrap installed and allowed to work)."""
    bwrap = find_bwrap()
    if bwrap is None:
        return JailCheck(False, "bubblewrap (bwrap) is not installed")
    return _probe(bwrap, interpreter(site_packages), site_packages, os.geteuid())


@functools.cache
def _probe(bwrap: str, python: str, site_packages: bool, euid: int) -> JailCheck:
    with tempfile.TemporaryDirectory(prefix="crewbus-jail-probe-") as workspace:
        argv = jail_argv(bwrap, Path(workspace), {"PATH": "/usr/bin:/bin"}, site_packages)
        try:
            probe = subprocess.run([*argv, python, "-I", "-S", "-c", "pass"],
                                   capture_output=True, timeout=20, check=False, env={})
        except (OSError, subprocess.TimeoutExpired) as e:
            return JailCheck(False, f"bwrap did not run ({e})")
    if probe.returncode != 0:
        lines = probe.stderr.decode(errors="replace").strip().splitlines()
        return JailCheck(False, lines[-1] if lines else f"bwrap exited {probe.returncode}")
    return JailCheck(True, bwrap)


def hand_over(workspace: Path, uid: int) -> None:
    """Give the workspace to the snippet's user (root's jail), so it can write there; the
    executor, root, still reads and writes everything in it. Walked by file descriptor and
    never through a link (`os.fwalk`, `lchown` relative to the directory), so a snippet of
    the same task swapping a directory for a link cannot make root chown a file elsewhere."""
    for _, dirs, files, dir_fd in os.fwalk(workspace, follow_symlinks=False):
        if os.fstat(dir_fd).st_uid != uid:
            os.fchown(dir_fd, uid, uid)
        for name in (*dirs, *files):
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                if os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_uid != uid:
                    os.chown(name, uid, uid, dir_fd=dir_fd, follow_symlinks=False)
