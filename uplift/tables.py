"""Reading and writing customer tables (CSV or parquet), atomically, with fingerprints.

Real tables are messy; this module reads them as they are (UTF-8 BOM, CRLF line
ends, TRUE/FALSE booleans) and leaves judging their content to ``data.py``.
Writes go to a temporary file in the target folder and are renamed into place,
so a reader never sees a partial file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

CSV_SUFFIXES = (".csv", ".csv.gz")
_TEMP_SUFFIX = ".tmp"
_TEMP_MARK = "uplift-"
# ".<target name>.uplift-<8 random characters of mkstemp>.tmp": this toolkit's own.
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.uplift-[A-Za-z0-9_]{8}\.tmp$")
# The earlier spelling without the mark, recognised only for the target being written.
_OLD_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]{8}\.tmp$")
PARQUET_SUFFIXES = (".parquet", ".pq")


def table_format(path: str | os.PathLike[str]) -> str | None:
    """``"csv"`` or ``"parquet"`` by the file's extension, else None."""
    name = Path(path).name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def read_header(path: str | os.PathLike[str]) -> list[str]:
    """The column names of a table without reading its rows."""
    if table_format(path) == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    return list(pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns)


def read_table(
    path: str | os.PathLike[str], text_columns: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Read a .csv(.gz) or .parquet table.

    Args:
        path: The file.
        text_columns: Columns to keep as text exactly as written (ids, group
            names), so that ``007`` stays ``007``.

    Raises:
        ValueError: unknown extension. pandas/pyarrow errors propagate for the
            caller to name the file.
    """
    kind = table_format(path)
    if kind == "parquet":
        return pd.read_parquet(path)
    if kind != "csv":
        raise ValueError(f"unsupported table extension: {Path(path).name}")
    header = read_header(path)
    dtype = {c: str for c in text_columns if c in header}
    return pd.read_csv(path, encoding="utf-8-sig", dtype=dtype, low_memory=False)


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{_TEMP_MARK}"


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    with contextlib.suppress(OSError, ValueError), \
            open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temps(path: str | os.PathLike[str], max_age_hours: float = 24.0
                       ) -> list[Path]:
    """Remove temporary files this toolkit's interrupted writes left beside ``path``.

    Only files named as :func:`atomic_path` names them (``.<target>.uplift-XXXXXXXX.tmp``)
    are touched, never other tools' files. Those of ``path`` itself go (the caller
    holds its lock); those of other targets only once older than ``max_age_hours``, so
    a write still running elsewhere keeps its own.
    """
    target = Path(path)
    removed = []
    cutoff = time.time() - 3600 * max_age_hours
    for leftover in target.parent.glob(f".*{_TEMP_SUFFIX}"):
        ours = _TEMP_NAME.match(leftover.name) or _OLD_TEMP_NAME.match(leftover.name)
        if ours is None or not leftover.is_file():
            continue
        mine = ours["target"] == target.name
        if not mine and _TEMP_NAME.match(leftover.name) is None:
            continue  # the old spelling is too plain to judge for other names
        with contextlib.suppress(OSError):
            if mine or leftover.stat().st_mtime < cutoff:
                leftover.unlink()
                removed.append(leftover)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str],
                before_replace: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync and rename it into place.

    On any exception the temporary file is removed and ``path`` is untouched.
    ``before_replace`` gets the temporary file after the fsync, just before the rename
    (e.g. to hash it, or to remove a manifest that described the previous file). The
    file gets the usual permissions (0666 less the umask), not the temporary file's 0600.
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=_TEMP_SUFFIX,
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``frame`` to .csv or .parquet (by extension) atomically and deterministically."""
    kind = table_format(path)
    if kind is None:
        raise ValueError(f"unsupported table extension: {Path(path).name}")
    with atomic_path(path) as tmp:
        if kind == "parquet":
            frame.to_parquet(tmp, index=False, compression="snappy")
        else:
            compression = "gzip" if str(path).lower().endswith(".gz") else None
            if compression:
                # gzip stores a timestamp; mtime=0 keeps reruns byte-identical.
                compression = {"method": "gzip", "mtime": 0}
            frame.to_csv(tmp, index=False, lineterminator="\n", compression=compression)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def frame_sha256(frame: pd.DataFrame) -> str:
    """sha256 of a frame's content (column names, dtypes and values; not the index)."""
    digest = hashlib.sha256()
    digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    hashed = pd.util.hash_pandas_object(frame, index=False)
    digest.update(hashed.to_numpy().tobytes())
    return digest.hexdigest()
