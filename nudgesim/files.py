"""Where files go and how they are written: the one small I/O module.

- Every file is written under a temporary name in its own folder and renamed into place,
  so a reader (or a run killed with SIGKILL) never sees half a file. Files get the mode
  ``0666 & ~umask`` and folders ``0777 & ~umask``, like any other program the user runs.
- :func:`output_dir` turns a scenario's or experiment's ``name`` into exactly one folder
  under ``results/``: no name can point anywhere else. An explicit ``--out`` is the user's
  choice and is used as given.
- :func:`replace_folder` writes a whole folder under a hidden temporary sibling and swaps
  it in, so the folder holds one complete run at every moment (see its docstring).
- :func:`lock_folder` keeps two processes from writing one folder at once (``flock``: the
  kernel drops the lock when its holder dies, even by SIGKILL, so no lock goes stale).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import ScenarioError, UsageError

NAME_MAX_CHARS = 100  # a folder name well inside every filesystem's 255-byte limit
LOCK_NAME = ".nudgesim-lock"


def file_version(path: Path, where: str, allowed: str) -> tuple[str, int, int]:
    """(resolved path, size, mtime in ns): the key of a cache of a user's file, which any
    change to the file invalidates. A missing file is one ScenarioError: `where` names
    the field, `allowed` what it may name."""
    try:
        stat = path.stat()
    except OSError:
        raise ScenarioError(f"{where}: file not found ({path}); allowed: {allowed}") from None
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


# ---------------------------------------------------------------------------------------
# Modes
# ---------------------------------------------------------------------------------------


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux /proc);
    otherwise set and restored at once (``os.umask`` has no read-only form)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a new file: what ``open()`` would give (mkstemp alone gives 0600)."""
    return 0o666 & ~current_umask()


def _fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _finish(tmp: str, path: Path) -> None:
    """Give a finished temporary file the user's mode, flush it to disk and rename it."""
    os.chmod(tmp, file_mode())
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _temp_beside(path: Path, suffix: str = ".tmp") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    return tmp


# ---------------------------------------------------------------------------------------
# Atomic files
# ---------------------------------------------------------------------------------------


def written_in_place(path: Path) -> bool:
    """Whether `path` is a device or pipe to write into rather than replace: /dev/null,
    /dev/stdout, a named pipe. Renaming a finished file onto /dev/null replaces the device
    with a plain file for every program on the machine (a test that saved a figure to
    os.devnull did exactly that, run as root). A link under /dev (/dev/stdout leading to
    a file) is written through, not replaced; plain files under /dev/shm are written
    atomically as anywhere else. A block device or a socket is refused: nothing nudgesim
    writes belongs there."""
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = None
    if mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        return True
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UsageError(f"{path}: a block device or socket, not a file; allowed: a file's "
                         "path, or a character device or pipe such as /dev/null")
    return path.is_symlink() and Path(os.path.abspath(path)).parts[:2] == ("/", "dev")


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[str]:
    """A temporary file's name beside `path` for a writer that wants a path (Parquet,
    savefig, a ParquetWriter fed in row groups): renamed onto `path`, with the user's
    mode and flushed to disk, when the block ends; removed if it raises. A device or
    pipe (written_in_place) is handed over as itself: it cannot be replaced atomically,
    and must not be replaced at all."""
    path = Path(path)
    if written_in_place(path):
        yield str(path)
        return
    tmp = _temp_beside(path, suffix)
    try:
        yield tmp
        _finish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half."""
    raw = data if isinstance(data, bytes) else data.encode("utf-8")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(raw)


def write_parquet_atomic(table: Any, path: str | Path) -> None:
    """A DataFrame (no index), or a dict of numpy columns, as Parquet, written like
    :func:`write_atomic`. Columns go straight to pyarrow: no pandas import for them."""
    with atomic_path(path) as tmp:
        if isinstance(table, dict):
            import pyarrow as pa
            import pyarrow.parquet as pq

            arrays = [arrow_column(values) for values in table.values()]
            pq.write_table(pa.Table.from_arrays(arrays, names=list(table)), tmp)
        else:
            table.to_parquet(tmp, index=False)


def arrow_column(values: Any) -> Any:
    """A numpy column (numbers, bools, or strings in an object array) as an Arrow array,
    made from its buffers. Why not `pyarrow.array`: it imports pandas (~0.5 s) to ask
    whether the values are pandas objects, and `nudgesim run` otherwise needs no pandas.
    Anything else (None among strings, other objects) goes through `pyarrow.array`."""
    import numpy as np
    import pyarrow as pa

    values = np.asarray(values)
    n = len(values)
    if values.dtype == bool:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(bits)])
    if values.dtype.kind in "iuf":
        data = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("="))
        return pa.Array.from_buffers(pa.from_numpy_dtype(data.dtype), n,
                                     [None, pa.py_buffer(data)])
    if values.dtype == object and all(type(v) is str for v in values):
        encoded = [v.encode() for v in values]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        return pa.Array.from_buffers(pa.large_string(), n, [
            None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])
    return pa.array(values)


def csv_text(columns: dict[str, Any]) -> str:
    """A dict of numpy columns as CSV text, the same text pandas' `to_csv(index=False)`
    writes for them (a test compares the two): numbers in their shortest round-trip form,
    NaN as an empty field, a field with a comma, quote or line break quoted."""
    import numpy as np

    def field(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, (float, np.floating)):
            return "" if value != value else repr(float(value))
        text = str(value)
        if any(c in text for c in ',"\n\r'):
            return '"' + text.replace('"', '""') + '"'
        return text

    rows = zip(*(np.asarray(c).tolist() for c in columns.values()), strict=True)
    lines = [",".join(field(name) for name in columns)]
    lines += [",".join(field(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def write_csv_atomic(columns: dict[str, Any], path: str | Path) -> None:
    """A dict of numpy columns as CSV (:func:`csv_text`), written like :func:`write_atomic`."""
    write_atomic(path, csv_text(columns))


def save_figure(fig: Any, path: str | Path, **savefig_kw: Any) -> Path:
    """Save a matplotlib figure like :func:`write_atomic` and close it."""
    path = Path(path)
    try:
        # the temporary keeps the real suffix: matplotlib picks the format from it
        with atomic_path(path, suffix=f".tmp{path.suffix}") as tmp:
            fig.savefig(tmp, **savefig_kw)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------
# Safe names
# ---------------------------------------------------------------------------------------


def safe_name(name: Any, field: str = "name") -> str:
    """One folder name made from `name`: letters and digits (any script), '-', '_' and '.'
    kept, spaces and every other character (slashes, backslashes, NUL, control characters)
    turned into '_', never starting with '.' (hidden, and the prefix of our temporaries)
    nor ending in '.'. Raises ScenarioError when nothing usable remains ("", "..", "/")."""
    if not isinstance(name, str):
        raise ScenarioError(f"{field}: {name!r} is not allowed; give a text name")
    text = unicodedata.normalize("NFKC", name)  # e.g. a full-width '／' becomes '/'
    kept = "".join(ch if (ch.isalnum() and ch.isprintable()) or ch in "-_." else "_" for ch in text)
    slug = re.sub(r"_+", "_", kept).strip("._-")[:NAME_MAX_CHARS].rstrip("._-")
    if not slug:
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise ScenarioError(
            f"{field}: {shown!r} has no letters or digits to name a results folder; "
            "allowed: letters, digits, '-', '_', '.' and spaces"
        )
    return slug


def output_dir(name: Any, out: str | Path | None = None, root: str | Path = "results") -> Path:
    """The folder a run or sweep writes to: `out` as given when the user chose one, else
    ``<root>/<safe_name(name)>``, which can never lead outside `root`."""
    if out is not None and str(out) != "":
        return Path(out)
    return Path(root) / safe_name(name)


# ---------------------------------------------------------------------------------------
# Folders
# ---------------------------------------------------------------------------------------


def make_folder(path: str | Path, what: str = "--out") -> Path:
    """Create `path` (and parents) as a folder; an existing file there is a UsageError."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise UsageError(f"{what}: {p} is a file; give a folder")
        if p.is_dir():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"{what}: {path} is a file; give a folder") from None
    except PermissionError as err:
        raise UsageError(f"{what}: cannot create folder {path}: {err.strerror}") from None
    return path


_HOST = hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
_ACTIVE: set[str] = set()  # temporaries this process is using right now


def _stem(name: str) -> str:
    """The folder name as it appears in its temporaries (short enough for 255 bytes)."""
    return os.fsencode(name)[:80].decode(sys.getfilesystemencoding(), "ignore")


def _temp_name(name: str, kind: str) -> str:
    return f".{_stem(name)}.{kind}-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OverflowError:
        return False
    return True


def stale_temporaries(folder: Path) -> list[Path]:
    """Temporary siblings of `folder` left by a process that is gone (killed mid-save):
    written on this machine by a pid that no longer runs, or by this process and no longer
    in use. Temporaries of live processes (or of other machines) are never listed."""
    parent, name = folder.parent, folder.name
    pattern = re.compile(
        rf"^\.{re.escape(_stem(name))}\.(?:tmp|old)-([0-9a-f]{{8}})-(\d+)-[0-9a-f]{{8}}$"
    )
    found = []
    try:
        entries = list(os.scandir(parent))
    except FileNotFoundError:
        return []
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None or m.group(1) != _HOST:
            continue
        pid = int(m.group(2))
        mine = pid == os.getpid() and entry.name not in _ACTIVE
        if mine or not _pid_alive(pid):
            found.append(Path(entry.path))
    return found


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE). False when the
    system or the filesystem cannot; then the caller falls back to two renames."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _rename_onto_nothing(tmp: Path, out: Path) -> bool:
    """Rename into a free place (atomic); False if a folder with files appeared there."""
    try:
        os.rename(tmp, out)
    except OSError as err:
        if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    return True


def _check_target(given: Path, what: str) -> Path:
    """`given` made absolute (a symlinked folder is followed: the link keeps working)."""
    out = Path(os.path.realpath(given)) if given.is_symlink() else given
    out = Path(os.path.abspath(out))
    if out.exists() and not out.is_dir():
        raise UsageError(f"{what}: {given} is a file; give a folder")
    cwd = Path(os.path.realpath(os.getcwd()))
    real = Path(os.path.realpath(out))
    if real == cwd or real in cwd.parents or out.name in ("", ".", ".."):
        raise UsageError(
            f"{what}: {given} is the working folder or holds it; give a folder inside it"
        )
    return out


REPORT_FILES = frozenset(
    {"report.html", "report.md", "report_adoption.png", "report_wards.png", "report_frontier.png",
     # an ensemble plan's decision figures (nudgesim.planning.figures.FILES)
     "report_pbest.png", "report_regret.png", "report_ensemble.png", "report_voi.png",
     "report_map.png"}  # a plan's ward map (nudgesim.maps), when the scenario has geography
)
"""What `nudgesim report` adds to a run or plan folder."""
_DEBRIS = re.compile(r"^\..+\.tmp(\.\w+)?$")  # half-written files of older versions


def foreign_files(folder: Path, marker: str, own: frozenset[str], kind: str) -> str | None:
    """Why `folder` must not be replaced by a new `kind` folder, or None: it must be empty,
    or hold `marker` and nothing but `own` files and reports, so replacing it never deletes
    a user's own files."""
    names = {p.name for p in folder.iterdir()}
    if not names:
        return None
    others = sorted(n for n in names - own - REPORT_FILES if not _DEBRIS.match(n))
    if marker in names and not others:
        return None
    shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    why = ([f"has no {marker}"] if marker not in names else []) + (
        [f"holds {shown}"] if others else []
    )
    return (
        f"is not a nudgesim {kind} folder ({', '.join(why)}); replacing it would delete "
        "its files; give an empty or new folder"
    )


def check_replaceable(
    out: str | Path,
    refuse: Callable[[Path], str | None] | None = None,
    what: str = "--out",
) -> Path:
    """What :func:`replace_folder` checks before it writes anything, for callers that want
    to say so before spending a run: `out` is not a file, not the working folder (or one
    holding it), and `refuse(out)` has no objection. Returns `out` made absolute."""
    given = Path(out)
    out = _check_target(given, what)
    for p in out.parents:
        if p.exists() and not p.is_dir():
            raise UsageError(f"{what}: {p} is a file; give a folder")
    if out.is_dir() and refuse is not None:
        reason = refuse(out)
        if reason:
            raise UsageError(f"{what}: {given} {reason}")
    return out


@contextlib.contextmanager
def replace_folder(
    out: str | Path,
    refuse: Callable[[Path], str | None] | None = None,
    what: str = "--out",
) -> Iterator[Path]:
    """Yield a new empty folder to fill; when the block ends without error, it replaces
    `out` whole, so `out` holds the complete old contents or the complete new ones at every
    moment, even if the process is killed (SIGKILL) anywhere.

    The new folder is a hidden sibling ``.<name>.tmp-<host>-<pid>-<random>``. On Linux it is
    swapped with `out` in one atomic step (renameat2 RENAME_EXCHANGE) and the old contents,
    now under the temporary name, are deleted. Elsewhere (or on a filesystem without the
    exchange) `out` is renamed aside to ``.<name>.old-...`` and the new folder renamed in:
    between those two renames `out` is briefly missing; a kill there leaves both complete
    copies as temporaries, and the next save replaces them. Every save first deletes
    temporaries of `out` whose process is gone, never those of a live one.

    refuse(existing folder) returns why it must not be replaced (e.g. it holds a user's
    files) or None; the reason becomes a UsageError and nothing is touched.
    """
    out = check_replaceable(out, refuse, what)
    parent = make_folder(out.parent, what)
    for stale in stale_temporaries(out):
        _remove(stale)
    tmp = parent / _temp_name(out.name, "tmp")
    _ACTIVE.add(tmp.name)
    try:
        os.mkdir(tmp, 0o777)  # the umask applies, as for any folder the user makes
        yield tmp
        for entry in os.scandir(tmp):  # every file inside is already synced (_finish)
            if entry.is_dir():
                _fsync_dir(Path(entry.path))
        _fsync_dir(tmp)
        if not out.exists() and _rename_onto_nothing(tmp, out):
            pass
        elif _exchange(tmp, out):
            _fsync_dir(parent)
            shutil.rmtree(tmp, ignore_errors=True)  # the old contents
        else:
            old = parent / _temp_name(out.name, "old")
            _ACTIVE.add(old.name)
            try:
                os.rename(out, old)
                try:
                    os.rename(tmp, out)
                except BaseException:
                    os.rename(old, out)  # put the old run back rather than lose both
                    raise
                _fsync_dir(parent)
                shutil.rmtree(old, ignore_errors=True)
            finally:
                _ACTIVE.discard(old.name)
        _fsync_dir(parent)
    except BaseException:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _ACTIVE.discard(tmp.name)


# ---------------------------------------------------------------------------------------
# Locks
# ---------------------------------------------------------------------------------------


def _lock_holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


@contextlib.contextmanager
def lock_folder(
    folder: str | Path,
    wait: bool = False,
    what: str = "--out",
    on_wait: Callable[[int | None], None] | None = None,
) -> Iterator[Path]:
    """Hold an exclusive lock on `folder` (created if missing) for the block.

    Another holder makes this a UsageError naming the folder and its pid, or, with
    `wait`, a wait until it lets go (`on_wait(pid)` is called once first). The lock is a
    ``flock`` on ``<folder>/.nudgesim-lock``: the kernel releases it when the holder exits
    however it exits, so a killed process never leaves a stale lock. The file itself stays
    (deleting a lock file races with the next locker).
    """
    folder = make_folder(folder, what)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            if not wait:
                who = f"pid {holder}" if holder is not None else "another process"
                raise UsageError(
                    f"{what}: {folder} is in use by another nudgesim process ({who}); "
                    "wait for it to finish (or pass --wait), or give another --out"
                ) from None
            if on_wait is not None:
                on_wait(holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield folder
    finally:
        os.close(fd)  # releases the lock
