"""Model folders of the pack, registered with the host's ``folder_paths``.

``models/mdim`` holds the pack's own files (Symmetric VAE adapters, LaMa weights as .safetensors);
``models/inpaint`` is the folder other inpainting packs use for LaMa/MAT files. Entries of the same
names in ``extra_model_paths.yaml`` are honoured, since ``folder_paths`` merges them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import folder_paths


def register_model_folder(name: str, extensions: Iterable[str]) -> None:
    """``models/<name>`` (kept where the host or another pack already registered it), listing ``extensions``.

    The folder's extension set is extended, never shrunk. A set shared with other folders (e.g. the
    host's ``supported_pt_extensions``, which another pack may have used) is replaced by a copy
    instead of being changed in place.
    """
    folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))
    paths, exts = folder_paths.folder_names_and_paths[name]
    wanted = set(extensions)
    if wanted <= set(exts):
        return
    if isinstance(exts, set) and exts is not getattr(folder_paths, "supported_pt_extensions", None):
        exts.update(wanted)
    else:
        folder_paths.folder_names_and_paths[name] = (paths, set(exts) | wanted)
    cache = getattr(folder_paths, "filename_list_cache", None)
    if isinstance(cache, dict):
        cache.pop(name, None)


def model_files(*folders: str) -> list[str]:
    """File names of the given model folders, first folder first, without repeats."""
    seen: dict[str, None] = {}
    for folder in folders:
        for name in folder_paths.get_filename_list(folder):
            seen.setdefault(name, None)
    return list(seen)


def full_path(name: str, *folders: str) -> str | None:
    """The path of ``name`` in the first of ``folders`` that lists it (None if none does)."""
    for folder in folders:
        if name in folder_paths.get_filename_list(folder):
            path = folder_paths.get_full_path(folder, name)
            if path is not None:
                return path
    return None
