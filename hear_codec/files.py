"""Writing files whole or not at all: the one place hear_codec and training write results from.

A long job killed mid-write (Ctrl-C, a cluster's time limit, a full disk) must leave either the
previous file or none, never half of one that a later reader or ``--resume`` trusts. Every
writer here writes a temporary file beside the target, flushes it to disk, then renames it over
the target (``os.replace`` is atomic on POSIX and Windows within one filesystem)::

    with atomic_path("out/model.ckpt") as tmp:   # any writer that takes a path
        torch.save(obj, tmp)
    write_text("out/results.md", table)
    write_json("out/results.json", {"accuracy": 0.9})
    atomic_torch_save({"step": 10, "weights": w}, "out/state.pt")

On any exception, including KeyboardInterrupt, the temporary file is removed and the target is
left as it was. A write that runs out of space (a full disk, a quota) raises :class:`DiskFullError`
(hear_codec/errors.py), one line naming the file, instead of the writer's own error (torch's is a
C++ message such as ``unexpected pos 832 vs 726`` that names neither).

A process killed outright (SIGKILL, a power cut) cannot remove its temporary file: each one is
named after its writer (``.<name>.<host>.<pid>.<random>.tmp``), so that a later run can remove the
ones whose writer is gone (:func:`stale_temporaries`) and leave alone those that another live
process is still writing into the same folder.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import socket
import time
from pathlib import Path

from .errors import DiskFullError

# A temporary file of another machine (a shared network folder), or of a name without its
# writer, counts as abandoned once nothing has written to it for this long.
STALE_SECONDS = 24 * 3600
_TEMPORARY = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{12}\.tmp$")

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_QUOTED_ERRNO = re.compile(r"(?:\(os error |\[Errno )(\d+)[)\]]")


def _disk_full(path: Path, cause: str, written: int) -> DiskFullError:
    before = f"{path} still holds its previous version" if path.exists() else f"no {path.name} was written"
    got = f"{size_text(written)} into the file; " if written else ""
    return DiskFullError(errno.ENOSPC, f"could not write {path}: {cause} ({got}free some space or raise the quota); "
                                       f"{before}")


def size_text(n: float) -> str:
    """A size in bytes for people: "3.6 MiB", "1.2 GiB", "512 bytes"."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} bytes"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path`` (its folder is created); once the body has written
    it, fsync it and rename it over ``path``. If the body raises, the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_beside(path)
    mode = os.stat(tmp).st_mode  # 0666 less the umask, as the kernel gave it
    try:
        yield tmp
        if os.stat(tmp).st_mode != mode:  # writers that recreate the file (safetensors: 0600)
            os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        cause = _out_of_space(e, tmp)  # while the temporary file still holds its space
        written = os.path.getsize(tmp) if os.path.exists(tmp) else 0
        if os.path.exists(tmp):
            os.unlink(tmp)
        if cause:
            raise _disk_full(path, cause, written) from e
        raise


def _out_of_space(error: BaseException, tmp: str) -> str | None:
    """Why a failed write failed, if it ran out of space: the ``ENOSPC``/``EDQUOT`` anywhere in
    the exception's chain (Python's writers raise it; torch's C++ writer, given a file object,
    chains it), or, for a writer whose error carries no errno (torch given a path, safetensors),
    a file system with no space left for the next block. None for any other failure."""
    seen = error
    for _ in range(8):  # the chain is short; the bound guards against a cycle
        if isinstance(seen, OSError) and seen.errno in _NO_SPACE:
            return os.strerror(seen.errno).lower()
        quoted = _QUOTED_ERRNO.search(str(seen))  # an errno in the text alone (Rust's "os error 28": safetensors)
        if quoted and int(quoted[1]) in _NO_SPACE:
            return os.strerror(int(quoted[1])).lower()
        seen = seen.__cause__ or seen.__context__
        if seen is None:
            break
    if isinstance(error, Exception):  # not KeyboardInterrupt and the like
        try:
            st = os.statvfs(os.path.dirname(tmp) or ".")
        except OSError:
            return None
        if st.f_bavail * st.f_frsize < max(st.f_bsize, 4096):
            return "no space left on device"
    return None


def _create_beside(path: Path) -> str:
    """Create a new, empty, uniquely named file beside ``path`` and return its name. Created with
    mode 0666, which the kernel narrows by the umask exactly as for a plain open() (mkstemp's
    files are private, 0600, and reading the umask means setting it, process-wide)."""
    while True:
        tmp = str(path.parent / f".{path.name}.{_host()}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:  # a name another writer holds: draw again
            continue


def write_bytes(path: str | os.PathLike, write) -> Path:
    """Call ``write(f)`` on a binary file object whose content becomes ``path``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` (UTF-8) as the file ``path``, atomically."""
    return write_bytes(path, lambda f: f.write(text.encode()))


def write_json(path: str | os.PathLike, data, indent: int = 1) -> Path:
    """``data`` (JSON data) as the file ``path``, atomically; serialised before the file is opened,
    so data that is not JSON raises TypeError and leaves ``path`` untouched."""
    return write_text(path, json.dumps(data, indent=indent))


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` as the file ``path``, atomically."""
    import torch  # here, so that the plain-file writers above import without torch

    # Through a file object, so that a failed write's OSError (e.g. ENOSPC) is chained to torch's
    # RuntimeError, which names no cause when torch opens the path itself.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def _host() -> str:
    """This machine's name as it goes into a temporary file's name: letters, digits and '-'."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0])[:40] or "host"


def stale_temporaries(folder: str | os.PathLike, now: float | None = None) -> list:
    """The temporary files of :func:`atomic_path` below ``folder`` whose writer is gone: written by
    a process of this machine that has ended, or (another machine's, or named without a writer)
    untouched for STALE_SECONDS. A live writer's files are never listed."""
    now = time.time() if now is None else now
    stale = []
    for tmp in Path(folder).rglob(".*.tmp"):
        match = _TEMPORARY.match(tmp.name)
        try:
            if match and match["host"] == _host():
                if not _process_alive(int(match["pid"])):
                    stale.append(tmp)
            elif now - tmp.stat().st_mtime > STALE_SECONDS:
                stale.append(tmp)
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            continue
    return stale


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
