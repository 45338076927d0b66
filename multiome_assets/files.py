"""Files on a local disk or any fsspec store, written whole: the helpers that the warehouse, the
training checkpoints, the figures and the simulator share.

A path is a local `Path` or, for a URL (`s3://bucket/prefix`, `gs://...`, `memory://...`), a
universal-pathlib `UPath`; every function here takes either kind.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Iterator

from upath import UPath


def as_path(root: str | Path) -> Path:
    """A local path as an absolute Path; a URL (`s3://bucket/prefix`) as a UPath."""
    if isinstance(root, UPath) or "://" in str(root) and not str(root).startswith("file://"):
        # no cached listings: other processes write here, and a cached entry holds an old version's ETag
        return UPath(str(root), use_listings_cache=False)
    return Path(str(root).removeprefix("file://")).resolve()


def is_remote(path) -> bool:
    """True for a path on an fsspec filesystem other than the local disk."""
    return isinstance(path, UPath) and not isinstance(path, PurePath)


@contextmanager
def atomic_path(path: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a local temp path (ending in `suffix`, by default `path`'s own, for writers that go
    by it); publish it as `path` only if the block succeeds: renamed over it on a local disk,
    uploaded in one piece to a remote root. A write that fails (a full disk, a folder that cannot
    be written, a bucket that does not exist) raises OSError naming `path`, and leaves `path` as
    it was and no temp file behind."""
    tmp = None
    remote = is_remote(path)
    try:
        if not remote:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=None if remote else path.parent, prefix=f".{path.name}.",
                                   suffix=path.suffix if suffix is None else suffix)
        os.close(fd)
        yield Path(tmp)
        if remote:
            path.fs.put_file(tmp, path.path)
        else:
            os.replace(tmp, path)
    except OSError as e:
        raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def local_file(path: Path) -> Iterator[Path]:
    """`path` itself, or a local temp copy of a remote one (for readers that need a file: h5py)."""
    if not is_remote(path):
        yield Path(path)
        return
    fd, tmp = tempfile.mkstemp(suffix=path.suffix)
    os.close(fd)
    try:
        path.fs.get_file(path.path, tmp)
        yield Path(tmp)
    finally:
        os.remove(tmp)


def remove(path: Path) -> None:
    """Delete a file or a folder and all it holds, local or remote; nothing there is fine."""
    if is_remote(path):
        if path.exists():
            path.fs.rm(path.path, recursive=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def save_figure(fig, path: Path, max_width_px: int = 1000) -> None:
    """A matplotlib figure as a PNG at most `max_width_px` wide (the width of the UI's metadata
    dialog: a wider image is clipped there), written atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(as_path(path)) as tmp:
            fig.savefig(tmp, format="png", dpi=min(100, max_width_px / fig.get_figwidth()))
    finally:
        plt.close(fig)


def sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with as_path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
