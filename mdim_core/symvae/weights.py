"""Adapter files: safetensors with the adapter tensors and metadata that says what they fit.

Metadata keys (all strings, as safetensors requires):

``mdim.kind``            ``"symvae-adapters"``
``mdim.format_version``  ``"1"``
``mdim.base_family``     e.g. ``"kl-f8-z4"``: KL autoencoder, 8x downscale, 4 latent channels
``mdim.tap_layout``      JSON list, per level: scale, tap_channels, decoder_channels, hidden
``mdim.base_fingerprint`` JSON: mean/std of a few base weights (tells SD1.5's VAE from SDXL's,
                         which have the same shapes)
``mdim.train``           JSON, free-form training record (steps, loss, data, ...)

Loading checks all of this against the base VAE in memory and raises ``ValueError`` saying
what does not fit (another VAE family, other channel widths, other weights, a damaged file).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..weight_files import read_safetensors
from .layout import VAELayout
from .model import SymmetricVAE

KIND = "symvae-adapters"
FORMAT_VERSION = 1
#: Relative tolerance of the base-weight fingerprint (fp16/bf16 copies of the same VAE pass).
FINGERPRINT_RTOL = 2e-2


def base_family(layout: VAELayout) -> str:
    return f"kl-f{layout.downscale}-z{layout.latent_channels}"


def base_fingerprint(layout: VAELayout) -> dict[str, list[float]]:
    """Per tensor: mean, std and 8 evenly spaced values (identify the weights, survive fp16)."""
    out = {}
    for name, t in layout.fingerprint_tensors().items():
        t = t.detach().to(device="cpu", dtype=torch.float64).flatten()
        idx = torch.linspace(0, t.numel() - 1, 8).round().long()
        out[name] = [float(t.mean()), float(t.std())] + [float(v) for v in t[idx]]
    return out


def metadata_for(sym: SymmetricVAE, train: dict | None = None) -> dict[str, str]:
    return {
        "mdim.kind": KIND,
        "mdim.format_version": str(FORMAT_VERSION),
        "mdim.base_family": base_family(sym.layout),
        "mdim.tap_layout": json.dumps(sym.tap_layout()),
        "mdim.base_fingerprint": json.dumps(base_fingerprint(sym.layout)),
        "mdim.decoder": "level0" if sym.tuned is not None else "none",
        "mdim.train": json.dumps(train or {}),
    }


def save_adapters(sym: SymmetricVAE, path: str | os.PathLike, train: dict | None = None) -> Path:
    """Write the adapters of ``sym`` (float32, CPU) with metadata; atomic (temp file + rename)."""
    path = Path(path)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in sym.export_state().items()}
    tmp = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tmp), metadata=metadata_for(sym, train))
    os.replace(tmp, path)
    return path


def read_adapter_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of an adapter file; ``ValueError`` if it is not a valid one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"adapter file: {path} does not exist")
    tensors, meta = read_safetensors(path, "adapter file: ")
    if meta.get("mdim.kind") != KIND:
        raise ValueError(
            f"adapter file: {path.name} is not a Symmetric VAE adapter file "
            f"(metadata mdim.kind={meta.get('mdim.kind')!r}, expected {KIND!r})"
        )
    try:
        version = int(meta.get("mdim.format_version", ""))
    except ValueError:
        raise ValueError(f"adapter file: {path.name} has no valid mdim.format_version") from None
    if version > FORMAT_VERSION:
        raise ValueError(
            f"adapter file: {path.name} has format version {version}; this MDIM reads up to "
            f"{FORMAT_VERSION} (update ComfyUI-MDIM)"
        )
    return tensors, meta


def check_fit(sym: SymmetricVAE, meta: dict[str, str], name: str = "adapter file") -> list[str]:
    """Everything in ``meta`` that does not fit the base VAE of ``sym`` (empty list: it fits)."""
    problems = []
    family = base_family(sym.layout)
    if meta.get("mdim.base_family") != family:
        problems.append(f"made for a {meta.get('mdim.base_family')} VAE, the loaded VAE is {family}")
    try:
        levels = json.loads(meta.get("mdim.tap_layout", ""))
    except json.JSONDecodeError:
        levels = None
    if not isinstance(levels, list):
        problems.append("its tap layout metadata is missing or damaged")
    else:
        ours = sym.tap_layout()
        if len(levels) != len(ours):
            problems.append(f"it has {len(levels)} levels, the loaded VAE has {len(ours)}")
        else:
            for theirs, mine in zip(levels, ours):
                for key in ("scale", "tap_channels", "decoder_channels"):
                    if theirs.get(key) != mine[key]:
                        problems.append(
                            f"level {mine['level']}: {key} {theirs.get(key)} in the file, {mine[key]} in the loaded VAE"
                        )
    try:
        fp = json.loads(meta.get("mdim.base_fingerprint", ""))
    except json.JSONDecodeError:
        fp = None
    if isinstance(fp, dict) and not problems:
        mine = base_fingerprint(sym.layout)
        for key, values in mine.items():
            theirs = fp.get(key)
            if not isinstance(theirs, list) or len(theirs) != len(values):
                continue
            tol = FINGERPRINT_RTOL * max(abs(values[1]), 1e-12)
            if any(abs(a - b) > tol for a, b in zip(values, theirs)):
                problems.append(
                    f"it was trained on other VAE weights ({key} differs: mean/std {theirs[0]:.4g}/{theirs[1]:.4g} "
                    f"in the file, {values[0]:.4g}/{values[1]:.4g} in the loaded VAE)"
                )
                break
    return problems


def load_adapters(sym: SymmetricVAE, path: str | os.PathLike, *, check_weights: bool = True) -> dict[str, str]:
    """Load an adapter file into ``sym`` (in place) after checking that it fits; returns its metadata.

    ``check_weights=False`` accepts a file made for another VAE of the same architecture.
    """
    tensors, meta = read_adapter_file(path)
    name = Path(path).name
    problems = check_fit(sym, meta, name)
    if not check_weights:
        problems = [p for p in problems if not p.startswith("it was trained on other VAE weights")]
    try:
        levels = json.loads(meta.get("mdim.tap_layout", "[]"))
        hidden = [int(level["hidden"]) for level in levels]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        hidden = None
    if problems:
        raise ValueError(f"adapter file: {name} does not fit this VAE: " + "; ".join(problems))
    if hidden is not None and hidden != sym.hidden:
        fresh = SymmetricVAE(sym.base, hidden=hidden)
        p = sym.adapters[0].conv_in.weight
        sym.adapters = fresh.adapters.to(device=p.device, dtype=p.dtype)
        sym.hidden = hidden
    probe = SymmetricVAE(sym.base, hidden=sym.hidden)
    if any(k.startswith("decoder.") for k in tensors):
        try:
            probe.enable_decoder_tuning()
        except TypeError as exc:
            raise ValueError(f"adapter file: {name} holds a tuned decoder part that does not fit: {exc}") from exc
    expected = probe.export_state()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)]
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:4]}")
        if extra:
            parts.append(f"unexpected tensors {extra[:4]}")
        if wrong:
            parts.append(
                "wrong shapes " + ", ".join(f"{k} {tuple(tensors[k].shape)} != {tuple(expected[k].shape)}" for k in wrong[:4])
            )
        raise ValueError(f"adapter file: {name} does not fit this VAE: " + "; ".join(parts))
    for k, t in tensors.items():
        if not torch.isfinite(t).all():
            raise ValueError(f"adapter file: {name} is damaged: tensor {k} holds NaN or infinite values")
    sym.import_state(tensors)
    return meta
