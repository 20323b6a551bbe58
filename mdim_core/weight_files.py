"""Reading weight files without running code from them.

Model files come as ``.safetensors`` (read as is) or as pickled PyTorch files (``.pt``/``.pth``/``.ckpt``/
``.bin``), and pickles can run code when they are loaded. :func:`read_weights` reads plain state dicts with
``torch.load(weights_only=True)`` and TorchScript archives (e.g. IOPaint's ``big-lama.pt``) with a
restricted unpickler that accepts only module placeholders and tensors; anything else is refused with a
message naming the file. Used by every loader of user weights that may not be safetensors (LaMa, SD
checkpoints for training).
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger("MDIM")

#: File name endings read by :func:`read_weights`.
WEIGHT_EXTENSIONS = (".safetensors", ".sft", ".pt", ".pth", ".ckpt", ".bin")


class _ScriptObject:
    """Stands in for a TorchScript module while its archive is read: keeps the attributes, runs nothing."""

    __slots__ = ("state",)

    def __setstate__(self, state) -> None:
        self.state = state


@dataclass(frozen=True)
class _StorageType:
    dtype: torch.dtype


_STORAGES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    return storage.as_strided(tuple(size), tuple(stride), int(offset))


def _same(value, *_ignored):
    return value


class _ArchiveUnpickler(pickle.Unpickler):
    """Reads a TorchScript ``data.pkl``: module objects become :class:`_ScriptObject`, tensors are
    rebuilt from the archive's raw storages. Any other global is refused, so no code can run."""

    def __init__(self, file, archive: zipfile.ZipFile, root: str, path: str):
        super().__init__(file)
        self.archive, self.root, self.path = archive, root, path
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptObject
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _same
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" and name in _STORAGES:
            return _StorageType(_STORAGES[name])
        if module == "torch.jit._pickle" and name.startswith("build_") and name.endswith("list"):
            return list
        if module == "torch.jit._pickle" and name == "restore_type_tag":
            return _same
        raise pickle.UnpicklingError(f"{module}.{name} is not a tensor or module attribute")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, kind, key, _location, numel = pid[:5]
        if not isinstance(kind, _StorageType):
            raise pickle.UnpicklingError(f"unexpected storage type {kind!r}")
        key = str(key)
        if key not in self.storages:
            raw = self.archive.read(f"{self.root}/data/{key}")
            count = len(raw) // torch.empty((), dtype=kind.dtype).element_size()
            if count < int(numel):
                raise pickle.UnpicklingError(f"storage {key} holds {count} values, {numel} expected")
            flat = (torch.frombuffer(bytearray(raw), dtype=kind.dtype, count=count) if count
                    else torch.empty(0, dtype=kind.dtype))
            self.storages[key] = flat
        return self.storages[key]


def _script_tensors(obj, prefix: str, out: dict[str, torch.Tensor], depth: int = 0) -> None:
    """Tensors reachable from a TorchScript module's attributes, named like ``state_dict()`` names them."""
    if depth > 64:
        raise ValueError("module nesting deeper than 64")
    state = obj.state if isinstance(obj, _ScriptObject) else obj
    if not isinstance(state, dict):
        return
    for name, value in state.items():
        if not isinstance(name, str):
            continue
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value.clone(memory_format=torch.contiguous_format)  # not a view into the archive
        elif isinstance(value, _ScriptObject):
            _script_tensors(value, f"{prefix}{name}.", out, depth + 1)


def _is_torchscript(archive: zipfile.ZipFile) -> str | None:
    """The archive's root folder if it is a TorchScript archive (it holds code), else None."""
    names = archive.namelist()
    for n in names:
        parts = n.split("/")
        if len(parts) == 2 and parts[1] == "constants.pkl":
            return parts[0]
    return None


def _read_torchscript(path: Path, archive: zipfile.ZipFile, root: str) -> dict[str, torch.Tensor]:
    order = f"{root}/byteorder"
    if order in archive.namelist() and archive.read(order).strip() not in (b"little", b""):
        raise ValueError(f"{path.name}: big-endian TorchScript archives are not supported")
    with archive.open(f"{root}/data.pkl") as f:
        try:
            top = _ArchiveUnpickler(f, archive, root, str(path)).load()
        except (pickle.UnpicklingError, KeyError, EOFError, ValueError, RuntimeError, TypeError, IndexError,
                AttributeError) as exc:
            raise ValueError(
                f"{path.name}: this TorchScript archive holds more than module weights ({exc}); it is not read "
                "because that would run code from the file. Convert it to .safetensors in an environment you trust."
            ) from None
    out: dict[str, torch.Tensor] = {}
    _script_tensors(top, "", out)
    if not out:
        raise ValueError(f"{path.name}: the TorchScript archive holds no weights")
    return out


def read_safetensors(path: str | os.PathLike, what: str = "") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (on the CPU) and metadata of a ``.safetensors`` file. Raises ``ValueError`` starting with
    ``what`` (e.g. ``"adapter file: "``) and naming the file when it is missing, truncated or not safetensors."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise ValueError(f"{what}{path.name} is not a readable safetensors file (missing, truncated or "
                         f"corrupted?): {exc}") from None
    return tensors, meta


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a weight file, on the CPU, without running any code from the file.

    ``.safetensors``/``.sft``: read as is. ``.pt``/``.pth``/``.ckpt``/``.bin``: a TorchScript archive
    (e.g. IOPaint's ``big-lama.pt``) is read by a restricted unpickler that accepts only module
    objects and tensors (the archive's code is never compiled or run); any other pickle goes
    through ``torch.load(weights_only=True)``. Nested dicts (training checkpoints) are returned
    flattened to ``"outer.inner"`` keys only for the wrappers LaMa checkpoints use (see
    :func:`lama_state_dict`); the result maps names to tensors. Raises ``ValueError`` naming the
    file when it cannot be read safely.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights: {path} does not exist")
    ext = path.suffix.lower()
    if ext not in WEIGHT_EXTENSIONS:
        raise ValueError(f"{path.name}: expected one of {', '.join(WEIGHT_EXTENSIONS)}, got {ext or 'no extension'!r}")
    if ext in (".safetensors", ".sft"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(f"{path.name}: not a readable safetensors file ({exc})") from None
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            root = _is_torchscript(archive)
            if root is not None:
                return _read_torchscript(path, archive, root)
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{path.name}: the file holds Python objects besides weights, so it is not loaded (that would run "
            f"code from it): {str(exc).splitlines()[0]}. Convert it to .safetensors in an environment you trust."
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{path.name}: not a readable PyTorch weight file ({str(exc).splitlines()[0]})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path.name}: expected a dict of weights, got {type(loaded).__name__}")
    return _flatten(loaded)


def _flatten(d: dict, prefix: str = "", depth: int = 0) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if depth > 8:
        return out
    for k, v in d.items():
        if isinstance(v, torch.Tensor):
            out[f"{prefix}{k}"] = v
        elif isinstance(v, dict) and isinstance(k, str):
            out.update(_flatten(v, f"{prefix}{k}.", depth + 1))
    return out
