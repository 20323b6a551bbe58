"""The resumable volume runner shared by the page commands (``restore``, ``clean``, ``mask``).

A command plans :class:`Job` s (one page each: where it comes from, where its main output goes),
gives a settings key (anything that changes an output) and a worker function, and
:func:`run_jobs` does the rest:

- one bad page (unreadable, truncated, empty, ...) is reported and skipped; the others go on;
- outputs are written atomically by the worker (``imageio`` writes through a temporary file), so a
  killed run or a full disk never leaves a half-written page, and finished pages are never redone;
- a manifest in the output folder (one file per command) records every finished page with its
  source's size and modification time and the settings key. Re-running skips pages whose output
  exists and whose record matches; a changed source or changed settings redo the page;
- a full disk stops the run at once (:class:`DiskFullError`, exit code 3) with a clear message;
- pages can run in several processes (``workers``).

Sources are page files, folders of pages, and CBZ/ZIP archives of pages (:func:`collect`).
"""

from __future__ import annotations

import concurrent.futures as cf
import errno
import json
import logging
import multiprocessing
import os
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..imaging import imageio

log = logging.getLogger("MDIM")

ARCHIVES = (".cbz", ".zip")


class DiskFullError(OSError):
    """The output disk is full: the batch stops (what was written is kept)."""


def disk_full(exc: OSError, target) -> OSError:
    """A :class:`DiskFullError` for an ENOSPC/EDQUOT error, else the error itself."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(exc.errno, f"the disk is full while writing {target}")
    return exc


@dataclass
class BatchReport:
    """What a batch did. ``failed``: (page, message) pairs. ``aborted``: why it stopped early, or None.
    ``results``: what the worker returned for each page done (besides its time), by page."""

    total: int = 0
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    aborted: str | None = None
    seconds: float = 0.0
    results: dict[str, dict] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.aborted:
            return 3
        return 1 if self.failed else 0

    def summary(self, what: str, output, extra: str = "") -> str:
        """The run's one-line summary, e.g. ``3 page(s) cleaned, 1 failed -> out/ (2.1 s)`` (+ ``extra``)."""
        parts = [f"{len(self.done)} {what}"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} already done (skipped)")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return f"{', '.join(parts)} -> {output} ({self.seconds:.1f} s){extra}"

    def print_problems(self, file) -> None:
        """Every failed page with its reason, then why the run stopped early (if it did), to ``file``."""
        for name, message in self.failed:
            print(f"  failed: {name}: {message}", file=file)
        if self.aborted:
            print(f"stopped: {self.aborted}", file=file)


@dataclass(frozen=True)
class Job:
    """One page: ``rel`` its name in reports and the manifest, ``path`` the file (or the archive),
    ``member`` the archive member (None for a plain file), ``target`` its main output file."""

    rel: str
    path: Path
    target: Path
    member: str | None = None


def source_stamp(path: Path, member: str | None = None) -> list:
    st = path.stat()
    return [int(st.st_size), int(st.st_mtime_ns)] + ([member] if member else [])


class Manifest:
    """Records of finished pages in ``out_dir/<name>`` (written atomically)."""

    def __init__(self, out_dir: Path, name: str):
        self.path = out_dir / name
        self.pages: dict[str, dict] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                if isinstance(data, dict) and isinstance(data.get("pages"), dict):
                    self.pages = data["pages"]
            except (OSError, ValueError):
                log.warning("[MDIM] %s is unreadable: finished pages will be redone", self.path)
        self._last_write = 0.0

    def finished(self, job: Job, key: str) -> bool:
        rec = self.pages.get(job.rel)
        return bool(rec and job.target.is_file() and rec.get("settings") == key
                    and rec.get("source") == source_stamp(job.path, job.member))

    def record(self, job: Job, key: str, seconds: float, extra: dict | None = None) -> None:
        self.pages[job.rel] = {"settings": key, "source": source_stamp(job.path, job.member),
                               "seconds": round(seconds, 3), **(extra or {})}

    def save(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < 1.0:
            return
        data = json.dumps({"version": 1, "pages": self.pages}, indent=1, sort_keys=True).encode()
        imageio.write_bytes_atomic(self.path, data)
        self._last_write = now


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and check a file can be written there (ValueError otherwise)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"output folder {str(folder)!r} cannot be created: {exc.strerror or exc}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".mdim-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"output folder {str(folder)!r} is not writable: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------------------------
# sources: page files, folders, CBZ/ZIP archives


def is_archive(path: Path) -> bool:
    return path.suffix.lower() in ARCHIVES


def _visible(parts) -> bool:
    return not any(part.startswith(".") or part == "__MACOSX" for part in parts)


def archive_pages(path: Path) -> list[str]:
    """The page members of a CBZ/ZIP archive, in name order (hidden files and folders skipped)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [i.filename for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"archive {str(path)!r} cannot be read: {exc}") from None
    return sorted(n for n in names if imageio.is_page_file(n) and _visible(Path(n).parts))


def collect(inputs: list[str], recursive: bool = False) -> list[tuple[str, Path, str | None]]:
    """``(rel, path, member)`` for every page of ``inputs`` (files, folders, archives).

    ``rel`` names the page in the output: a file's own name, ``folder-relative/path`` inside a
    folder given, ``<archive stem>/<member>`` inside an archive.
    """
    out = []
    for item in inputs:
        src = Path(item)
        if src.is_file() and is_archive(src):
            out += [(f"{src.stem}/{m}", src, m) for m in archive_pages(src)]
        elif src.is_file():
            out.append((src.name, src, None))
        elif src.is_dir():
            found = src.rglob("*") if recursive else src.iterdir()
            for p in sorted(found):
                rel = p.relative_to(src)
                if not p.is_file() or not _visible(rel.parts):
                    continue
                if is_archive(p):
                    out += [(f"{rel.with_suffix('').as_posix()}/{m}", p, m) for m in archive_pages(p)]
                elif imageio.is_page_file(p):
                    out.append((rel.as_posix(), p, None))
        else:
            raise ValueError(f"input: {item!r} does not exist (expected page files, folders or CBZ/ZIP archives)")
    seen: dict[str, str] = {}
    for rel, path, _member in out:
        if rel in seen:
            raise ValueError(f"input: two pages are both named {rel!r} ({seen[rel]} and {path}); give them one at a time")
        seen[rel] = str(path)
    return out


def read_job_page(job: Job, keep_uint8: bool = True) -> imageio.Page:
    """Read a job's page, from its file or from its archive (via a temporary file)."""
    if job.member is None:
        return imageio.read_page(job.path, keep_uint8=keep_uint8)
    try:
        with zipfile.ZipFile(job.path) as zf:
            data = zf.read(job.member)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ValueError(f"page {job.rel!r} cannot be read from {job.path.name}: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="mdim-page-") as tmp:
        file = Path(tmp) / Path(job.member).name
        file.write_bytes(data)
        page = imageio.read_page(file, keep_uint8=keep_uint8)
    return page


# ---------------------------------------------------------------------------------------------
# the run


def run_jobs(
    jobs: list[Job],
    out_dir: Path,
    key: str,
    worker: Callable,
    args: tuple = (),
    *,
    manifest_name: str,
    workers: int = 1,
    force: bool = False,
    progress: bool = True,
    desc: str = "pages",
) -> BatchReport:
    """Run ``worker(job, *args)`` for every job not already finished (see the module docstring).

    ``worker`` writes the job's outputs and returns its seconds, or ``(seconds, extra)`` with a small
    JSON-able dict kept in the report and the manifest. It raises ``ValueError`` for a bad page and
    :class:`DiskFullError` when the disk is full. With ``workers`` > 1 it must be picklable.
    """
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: expected a whole number >= 1, got {workers!r}")
    check_writable(out_dir)
    manifest = Manifest(out_dir, manifest_name)
    report = BatchReport(total=len(jobs))
    todo = []
    for job in jobs:
        if not force and manifest.finished(job, key):
            report.skipped.append(job.rel)
            report.results[job.rel] = {k: v for k, v in manifest.pages[job.rel].items()
                                       if k not in ("settings", "source", "seconds")}
        else:
            todo.append(job)
    t_start = time.perf_counter()
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="page", desc=desc, dynamic_ncols=True)
        bar.set_postfix(failed=0)

    def finish(job: Job, call) -> bool:
        try:
            result = call()
        except DiskFullError as exc:
            report.aborted = (f"{exc.strerror}. {len(report.done)} page(s) of this run and every page written "
                              f"before are complete and kept; free some space and run the same command again "
                              f"to go on.")
            return False
        except Exception as exc:  # one bad page never stops the volume
            message = str(exc) if isinstance(exc, (ValueError, OSError, MemoryError)) and str(exc) else f"{type(exc).__name__}: {exc}"
            report.failed.append((job.rel, message))
            log.warning("[MDIM] %s skipped: %s", job.rel, message)
        else:
            seconds, extra = result if isinstance(result, tuple) else (result, None)
            report.done.append(job.rel)
            if extra:
                report.results[job.rel] = extra
            manifest.record(job, key, seconds, extra)
            try:
                manifest.save()
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    report.aborted = "the disk is full (while saving the progress record); free some space and re-run"
                    return False
                raise
        if bar is not None:
            bar.update(1)
            bar.set_postfix(failed=len(report.failed))
        return True

    try:
        if workers == 1 or len(todo) <= 1:
            for job in todo:
                if not finish(job, lambda j=job: worker(j, *args)):
                    break
        else:
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = {pool.submit(worker, job, *args): job for job in todo}
                for fut in cf.as_completed(futures):
                    if not finish(futures[fut], fut.result):
                        for other in futures:
                            other.cancel()
                        break
    finally:
        if bar is not None:
            bar.close()
        try:
            manifest.save(force=True)
        except OSError as exc:
            log.warning("[MDIM] could not save %s: %s", manifest.path, exc)
    report.seconds = time.perf_counter() - t_start
    return report
