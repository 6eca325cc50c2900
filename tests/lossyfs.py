"""A filesystem that loses what was not fsynced, as a power cut does (issue #11, item 4).

``python -m tests.lossyfs BACKING MOUNTPOINT`` mounts (FUSE, in the foreground) a view of
the folder BACKING at MOUNTPOINT. Everything written through the mount lives in this
process's memory; BACKING holds only what a disk would still hold after a power cut:

* a file's data and size reach BACKING when the file is fsynced (``fsync``/``fdatasync``),
  page by page (4 KiB), under every name that BACKING already has for it;
* a folder's entries — files created, renamed, unlinked, folders made or removed — reach
  BACKING when that folder is fsynced (the name of a file never fsynced is an empty file
  there, as on a journalling filesystem that committed the inode but not its data).

The power cut is ``SIGKILL`` to this process: what was in memory is gone, BACKING is the
disk. Mount BACKING again and the filesystem is what survived. An fsync in progress at that
moment may have written some of its pages and not others (as a disk does); each page is
written whole. What SQLite needs works: fcntl locks (the kernel's, locally), shared
``mmap`` of the ``-shm`` file, truncation, unlink of open files, hard links (to rename without
replacing). Symbolic links, extended attributes and ``fallocate`` are refused.

Needs ``/dev/fuse``, libfuse 3 (Debian's ``fuse3``) and ``mfusepy`` (the test extra).
"""

from __future__ import annotations

import argparse
import errno
import itertools
import os
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAGE = 4096


@dataclass
class Node:
    ino: int
    mode: int
    data: bytearray = field(default_factory=bytearray)
    # What the disk holds of this file's data (None: never fsynced, so empty on the disk).
    durable: bytearray | None = None
    dirty: set[int] = field(default_factory=set)  # pages written since the last fsync
    mtime: float = field(default_factory=time.time)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


def parent_of(path: str) -> str:
    return os.path.dirname(path) or "/"


class LossyFS:
    """The filesystem's operations (mfusepy's path-based API); one lock serialises them."""

    use_ns = True

    def __init__(self, backing: Path, scratch: Path):
        self.backing = backing
        self.scratch = scratch  # temporary files for atomic whole-file writes to BACKING
        self.lock = threading.Lock()
        self.inos = itertools.count(2)
        self.fhs = itertools.count(1)
        self.open_files: dict[int, Node] = {}
        self.tree: dict[str, Node] = {}  # what the processes see
        self.disk: dict[str, int] = {}  # path → ino: the names BACKING has
        root = Node(1, stat.S_IFDIR | 0o755)
        self.tree["/"] = root
        self.disk["/"] = 1
        self._load("/")
        self.cuts_survived = 0

    def _real(self, path: str) -> Path:
        return self.backing / path.lstrip("/")

    def _load(self, folder: str) -> None:
        for entry in sorted(os.scandir(self._real(folder)), key=lambda e: e.name):
            path = os.path.join(folder, entry.name)
            st = entry.stat(follow_symlinks=False)
            if entry.is_dir(follow_symlinks=False):
                node = Node(next(self.inos), stat.S_IFDIR | (st.st_mode & 0o7777))
                self.tree[path], self.disk[path] = node, node.ino
                self._load(path)
            elif entry.is_file(follow_symlinks=False):
                content = Path(entry.path).read_bytes()
                node = Node(
                    next(self.inos),
                    stat.S_IFREG | (st.st_mode & 0o7777),
                    bytearray(content),
                    bytearray(content),
                    mtime=st.st_mtime,
                )
                self.tree[path], self.disk[path] = node, node.ino

    # -- helpers --------------------------------------------------------------------------

    def _node(self, path: str | None, fh: int | None = None) -> Node:
        if fh:
            node = self.open_files.get(fh)
            if node is not None:
                return node
        if path is not None:
            node = self.tree.get(path)
            if node is not None:
                return node
        raise OSError(errno.ENOENT, "no such file")

    @staticmethod
    def _children(folder: str, names: dict[str, Any]) -> Iterator[str]:
        return (p for p in list(names) if p != "/" and parent_of(p) == folder)

    def _durable_names(self, ino: int) -> list[str]:
        return [p for p, i in self.disk.items() if i == ino]

    def _write_whole(self, path: str, content: bytes | bytearray, mode: int) -> None:
        tmp = self.scratch / f"w{next(self.fhs)}"
        with open(tmp, "wb") as f:
            f.write(content)
        os.chmod(tmp, mode & 0o7777)
        os.replace(tmp, self._real(path))

    def _remove_real(self, path: str) -> None:
        real = self._real(path)
        if real.is_dir() and not real.is_symlink():
            for child in sorted(real.rglob("*"), reverse=True):
                child.rmdir() if child.is_dir() else child.unlink()
            real.rmdir()
        elif real.exists():
            real.unlink()

    # -- metadata -------------------------------------------------------------------------

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        with self.lock:
            node = self._node(path, fh)
            ns = int(node.mtime * 1e9)
            return {
                "st_mode": node.mode,
                "st_ino": node.ino,
                "st_nlink": 2 if node.is_dir else sum(n is node for n in self.tree.values()),
                "st_size": 0 if node.is_dir else len(node.data),
                "st_blocks": (len(node.data) + 511) // 512,
                "st_blksize": PAGE,
                "st_uid": os.getuid(),
                "st_gid": os.getgid(),
                "st_atime": ns,
                "st_mtime": ns,
                "st_ctime": ns,
            }

    def readdir(self, path: str, fh: int) -> list[str]:
        with self.lock:
            return [".", ".."] + [os.path.basename(p) for p in self._children(path, self.tree)]

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self.backing)
        return {
            k: getattr(st, k)
            for k in (
                "f_bsize",
                "f_frsize",
                "f_blocks",
                "f_bfree",
                "f_bavail",
                "f_files",
                "f_ffree",
                "f_namemax",
            )
        }

    def chmod(self, path: str | None, mode: int) -> int:
        with self.lock:
            node = self._node(path)
            node.mode = (node.mode & ~0o7777) | (mode & 0o7777)
            return 0

    def chown(self, path: str | None, uid: int, gid: int) -> int:
        return 0

    def utimens(self, path: str | None, times: tuple[int, int] | None = None) -> int:
        with self.lock:
            self._node(path).mtime = (times[1] / 1e9) if times else time.time()
            return 0

    def access(self, path: str, amode: int) -> int:
        with self.lock:
            self._node(path)
            return 0

    # -- files ----------------------------------------------------------------------------

    def create(self, path: str, mode: int, flags: int = 0) -> int:
        with self.lock:
            if parent_of(path) not in self.tree:
                raise OSError(errno.ENOENT, "no such folder")
            node = self.tree.get(path)
            if node is None:
                node = Node(next(self.inos), stat.S_IFREG | (mode & 0o7777))
                self.tree[path] = node
            fh = next(self.fhs)
            self.open_files[fh] = node
            return fh

    def open(self, path: str, flags: int) -> int:
        with self.lock:
            node = self._node(path)
            fh = next(self.fhs)
            self.open_files[fh] = node
            return fh

    def release(self, path: str | None, fh: int) -> int:
        with self.lock:
            self.open_files.pop(fh, None)
            return 0

    def flush(self, path: str | None, fh: int) -> int:
        return 0

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        with self.lock:
            return bytes(self._node(path, fh).data[offset : offset + size])

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        with self.lock:
            node = self._node(path, fh)
            end = offset + len(data)
            if end > len(node.data):
                node.data.extend(b"\0" * (end - len(node.data)))
            node.data[offset:end] = data
            node.dirty.update(range(offset // PAGE, (end - 1) // PAGE + 1))
            node.mtime = time.time()
            return len(data)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        with self.lock:
            node = self._node(path, fh)
            if length < len(node.data):
                del node.data[length:]
            else:
                node.data.extend(b"\0" * (length - len(node.data)))
            if length:
                node.dirty.add((length - 1) // PAGE)
            node.dirty = {p for p in node.dirty if p * PAGE < length}
            node.dirty.add(-1)  # the size changed: an fsync must write it even with no page
            node.mtime = time.time()
            return 0

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        with self.lock:
            node = self._node(path, fh)
            if node.is_dir:
                return self._sync_folder(path or "/")
            size = len(node.data)
            pages = sorted(p for p in node.dirty if p >= 0)
            if node.durable is None:
                node.durable = bytearray()
            if len(node.durable) > size:
                del node.durable[size:]
            else:
                node.durable.extend(b"\0" * (size - len(node.durable)))
            for p in pages:
                node.durable[p * PAGE : (p + 1) * PAGE] = node.data[p * PAGE : (p + 1) * PAGE]
            node.dirty.clear()
            for name in self._durable_names(node.ino):
                fd = os.open(self._real(name), os.O_WRONLY)
                try:
                    for p in pages:
                        os.pwrite(fd, bytes(node.data[p * PAGE : (p + 1) * PAGE]), p * PAGE)
                    os.ftruncate(fd, size)
                finally:
                    os.close(fd)
            return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        with self.lock:
            return self._sync_folder(path)

    def _sync_folder(self, folder: str) -> int:
        """The folder's entries as the processes see them become the disk's."""
        on_disk = set(self._children(folder, self.disk))
        now = set(self._children(folder, self.tree))
        for path in sorted(on_disk - now, reverse=True):
            self._remove_real(path)
            for sub in [p for p in self.disk if p == path or p.startswith(path + "/")]:
                del self.disk[sub]
        for path in sorted(now):
            node = self.tree[path]
            if self.disk.get(path) == node.ino:
                continue
            if path in self.disk:
                self._remove_real(path)
                for sub in [p for p in self.disk if p.startswith(path + "/")]:
                    del self.disk[sub]
            if node.is_dir:
                self._real(path).mkdir(mode=node.mode & 0o7777)
            else:
                self._write_whole(path, node.durable or b"", node.mode)
            self.disk[path] = node.ino
        return 0

    # -- names ----------------------------------------------------------------------------

    def unlink(self, path: str) -> int:
        with self.lock:
            node = self._node(path)
            if node.is_dir:
                raise OSError(errno.EISDIR, "a folder")
            del self.tree[path]
            return 0

    def mkdir(self, path: str, mode: int) -> int:
        with self.lock:
            if path in self.tree:
                raise OSError(errno.EEXIST, "exists")
            if parent_of(path) not in self.tree:
                raise OSError(errno.ENOENT, "no such folder")
            self.tree[path] = Node(next(self.inos), stat.S_IFDIR | (mode & 0o7777))
            return 0

    def rmdir(self, path: str) -> int:
        with self.lock:
            node = self._node(path)
            if not node.is_dir:
                raise OSError(errno.ENOTDIR, "not a folder")
            if any(True for _ in self._children(path, self.tree)):
                raise OSError(errno.ENOTEMPTY, "not empty")
            del self.tree[path]
            return 0

    def rename(self, old: str, new: str) -> int:
        with self.lock:
            node = self._node(old)
            target = self.tree.get(new)
            if (
                target is not None
                and target.is_dir
                and any(True for _ in self._children(new, self.tree))
            ):
                raise OSError(errno.ENOTEMPTY, "not empty")
            moved = {p: n for p, n in self.tree.items() if p == old or p.startswith(old + "/")}
            for p in moved:
                del self.tree[p]
            for sub in [p for p in self.tree if p.startswith(new + "/")]:
                del self.tree[sub]
            for p, n in moved.items():
                self.tree[new + p[len(old) :]] = n
            node.mtime = time.time()
            return 0

    def link(self, target: str, source: str) -> int:
        """``ln source target``: one more name of the same file (BACKING keeps a copy under
        each name: after a remount they are two files, which SQLite and the key files do not
        mind — they link only to rename without replacing)."""
        with self.lock:
            node = self._node(source)
            if node.is_dir:
                raise OSError(errno.EPERM, "a folder")
            if target in self.tree:
                raise OSError(errno.EEXIST, "exists")
            if parent_of(target) not in self.tree:
                raise OSError(errno.ENOENT, "no such folder")
            self.tree[target] = node
            return 0

    def symlink(self, target: str, source: str) -> int:
        raise OSError(errno.EPERM, "symbolic links are not supported")

    def fallocate(self, *args: object) -> int:
        raise OSError(errno.EOPNOTSUPP, "not supported")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backing", type=Path)
    parser.add_argument("mountpoint", type=Path)
    args = parser.parse_args()
    import mfusepy

    scratch = args.backing.parent / (args.backing.name + ".scratch")
    scratch.mkdir(exist_ok=True)
    fs = LossyFS(args.backing.resolve(), scratch.resolve())
    ops = type(
        "LossyOperations",
        (mfusepy.Operations,),
        {
            name: _as_fuse_error(getattr(fs, name))
            for name in dir(LossyFS)
            if not name.startswith("_") and callable(getattr(LossyFS, name))
        }
        | {"use_ns": True},
    )()
    mfusepy.FUSE(
        ops,
        str(args.mountpoint),
        foreground=True,
        nothreads=False,
        fsname="lossyfs",
        hard_remove=True,
    )


def _as_fuse_error(method: Any) -> Any:
    import functools

    import mfusepy

    @functools.wraps(method)
    def call(_self: object, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except mfusepy.FuseOSError:
            raise
        except OSError as exc:
            raise mfusepy.FuseOSError(exc.errno or errno.EIO) from exc

    return call


if __name__ == "__main__":
    main()
