"""Training checkpoints: atomic, resumable, safetensors only, the last N kept.

A checkpoint is a folder ``OUT/checkpoints/step-000500/`` holding

    unet.safetensors       the UNet's weights (float32, as trained)
    optimizer.safetensors  the optimizer's state tensors; its non-tensor state and hyper-parameters as metadata
    ema.safetensors        the EMA weights, when EMA is on
    state.json             step, settings, the mixed-precision loss scaler's state, format version

It is written into ``.step-000500.part/`` and renamed when complete, so a crash, Ctrl+C or a full disk
never leaves a checkpoint that looks complete but is not. Nothing here unpickles anything. Every random
number of a step is drawn from generators seeded by (seed, step), so a run resumed from a checkpoint
computes exactly what the uninterrupted run computed.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
from pathlib import Path

import torch

from ..cli.batch import DiskFullError  # the full-disk error of `restore`: one meaning, one class
from ..weight_files import read_safetensors

log = logging.getLogger("MDIM")

FORMAT_VERSION = 1
CHECKPOINTS = "checkpoints"
_NAME = re.compile(r"step-(\d{6,})")


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)  # safetensors reports I/O errors from Rust as SafetensorError text
    return any(s in text for s in ("No space left", "os error 28", "os error 122", "StorageFull", "QuotaExceeded"))


def save_file(tensors: dict, path: str, metadata: dict | None = None) -> None:
    """safetensors' ``save_file`` (one place, so tests can simulate a full disk)."""
    from safetensors.torch import save_file as _save

    _save(tensors, path, metadata=metadata)


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write ``tensors`` to ``path`` through a temporary file in the same folder, synced, then renamed.

    On any error the temporary file is removed; a full disk raises :class:`DiskFullError` naming ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        save_file(tensors, str(tmp), metadata)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if is_disk_full(exc):
            raise DiskFullError(errno.ENOSPC, f"the disk is full while writing {path}") from exc
        raise
    return path


# --------------------------------------------------------------------------------------------- optimizer state


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Flatten ``optimizer.state_dict()`` into tensors and JSON metadata (works for torch and bitsandbytes AdamW)."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, state in sd["state"].items():
        for key, value in state.items():
            name = f"{index}/{key}"
            if torch.is_tensor(value):
                tensors[name] = value.detach().to("cpu").contiguous()
            elif isinstance(value, (bool, int, float)) or value is None:
                scalars[name] = value
            else:
                raise TypeError(f"optimizer state {name}: cannot store a {type(value).__name__}")
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"scalars": json.dumps(scalars), "param_groups": json.dumps(groups)}


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    groups = json.loads(meta["param_groups"])
    template = optimizer.state_dict()["param_groups"]
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in template]:
        raise ValueError("the optimizer state belongs to another model (different parameters)")
    for g, t in zip(groups, template):
        for k, v in t.items():
            if isinstance(v, tuple) and isinstance(g.get(k), list):
                g[k] = tuple(g[k])
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        index, key = name.split("/", 1)
        state.setdefault(int(index), {})[key] = value
    for name, value in json.loads(meta["scalars"]).items():
        index, key = name.split("/", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# --------------------------------------------------------------------------------------------- checkpoints


def checkpoint_dir(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / CHECKPOINTS


def list_checkpoints(out_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as ``(step, folder)``, oldest first."""
    root = checkpoint_dir(out_dir)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _NAME.fullmatch(p.name)
        if m and p.is_dir() and (p / "state.json").is_file():
            found.append((int(m[1]), p))
    return sorted(found)


def remove_partial(out_dir: str | os.PathLike) -> None:
    """Remove what an interrupted save left behind (``.step-*.part`` folders)."""
    root = checkpoint_dir(out_dir)
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(".") and p.name.endswith(".part") and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(out_dir, step: int, unet: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
                    ema: dict[str, torch.Tensor] | None = None, scaler=None, config: dict | None = None,
                    extra: dict | None = None) -> Path:
    """Write the checkpoint of ``step`` atomically and return its folder."""
    root = checkpoint_dir(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{int(step):06d}"
    part = root / f".{final.name}.part"
    shutil.rmtree(part, ignore_errors=True)
    try:
        part.mkdir()
        atomic_save_safetensors({k: v.detach().to("cpu").contiguous() for k, v in unet.state_dict().items()},
                                part / "unet.safetensors", {"mdim.kind": "mdim-train-unet"})
        tensors, meta = optimizer_to_tensors(optimizer)
        atomic_save_safetensors(tensors, part / "optimizer.safetensors", meta)
        if ema is not None:
            atomic_save_safetensors({k: v.detach().to("cpu").contiguous() for k, v in ema.items()},
                                    part / "ema.safetensors", {"mdim.kind": "mdim-train-ema"})
        state = {
            "format_version": FORMAT_VERSION,
            "step": int(step),
            "config": config or {},
            "scaler": scaler.state_dict() if scaler is not None else None,
            "ema": ema is not None,
            **(extra or {}),
        }
        _write_text(part / "state.json", json.dumps(state, indent=2, default=str))
        if final.exists():
            shutil.rmtree(final)
        os.replace(part, final)
    except BaseException as exc:
        shutil.rmtree(part, ignore_errors=True)
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(errno.ENOSPC, f"the disk is full while writing the checkpoint {final}") from exc
        raise
    return final


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def read_checkpoint(folder: str | os.PathLike) -> dict:
    """The contents of a checkpoint folder: ``step``, ``config``, ``scaler``, ``unet``, ``optimizer``, ``ema``.

    Raises ``ValueError`` naming the folder when it is damaged.
    """
    folder = Path(folder)

    def read(name):
        return read_safetensors(folder / name)

    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        if state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format version {state.get('format_version')} (expected {FORMAT_VERSION})")
        unet, _ = read("unet.safetensors")
        opt, opt_meta = read("optimizer.safetensors")
        ema = read("ema.safetensors")[0] if state.get("ema") else None
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"checkpoint {folder} is damaged or incomplete ({exc}); delete it to resume from an "
                         f"earlier one") from exc
    return {**state, "unet": unet, "optimizer": (opt, opt_meta), "ema_weights": ema}


def rotate(out_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest complete checkpoints; returns the deleted folders."""
    if keep < 1:
        return []
    doomed = [p for _, p in list_checkpoints(out_dir)[:-keep]]
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)
    return doomed
