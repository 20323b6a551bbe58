"""Read the pack's node declarations without ComfyUI: what ``define_schema()`` of every node says.

CI cannot run ComfyUI, yet a changed input, type, default or tooltip must fail CI until the recorded
schema (``tests/data/mdim_object_info_<version>.json``, recorded from live hosts) is re-recorded. This
module imports ``nodes/`` with stand-ins for the host modules: ``comfy_api.latest.io`` records every
``Schema`` and ``Input``/``Output`` it is given, and every other ``comfy*``/``folder_paths``/... module is
an inert placeholder (its classes can be subclassed, its functions return placeholders). Sampler and
scheduler lists come from the recorded core schema, file lists are empty (as in the recorded files).

:func:`declared_object_info` turns the declarations into the shape of ComfyUI 0.8.0's ``/object_info``
for the fields a declaration controls, so tests compare them with the recorded answer field by field.
"""

from __future__ import annotations

import collections
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOST_MODULES = ("comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "latent_preview",
                "node_helpers", "nodes", "server", "execution")


class _Placeholder:
    """Anything: callable, attribute access, iteration (empty), subclassable through :func:`_class`."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Placeholder()

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder()

    def __iter__(self):
        return iter(())

    def __bool__(self):
        return False


class _StubModule(types.ModuleType):
    """A host module: capitalised names are fresh classes (distinct, so they can be combined as bases)."""

    def __init__(self, name, overrides=None):
        super().__init__(name)
        self.__path__ = []  # a package: submodules import
        self.__dict__.update(overrides or {})

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (_Placeholder,), {}) if name[:1].isupper() else _Placeholder()
        setattr(self, name, value)
        return value


# --------------------------------------------------------------------------- the recording io module


def _type_name(cls_name: str) -> str:
    """``Conditioning`` -> ``CONDITIONING``, ``UpscaleModel`` -> ``UPSCALE_MODEL`` (ComfyUI's io_type names)."""
    special = {"Vae": "VAE", "Clip": "CLIP", "ClipVision": "CLIP_VISION"}
    return special.get(cls_name, re.sub(r"(?<!^)(?=[A-Z])", "_", cls_name).upper())


class Declared:
    """One declared input or output."""

    def __init__(self, io_type: str, id_: str | None, kwargs: dict, output: bool):
        self.io_type, self.id, self.kwargs, self.output = io_type, id_, kwargs, output


def _io_class(io_type: str):
    class Input(Declared):
        def __init__(self, id, *args, **kwargs):  # noqa: A002 - ComfyUI's name
            if args:  # Combo.Input(id, options, ...) positional options
                kwargs = {"options": args[0], **kwargs}
            super().__init__(io_type, id, kwargs, output=False)

    class Output(Declared):
        def __init__(self, id=None, *args, **kwargs):  # noqa: A002
            super().__init__(io_type, id, kwargs, output=True)

    return type(io_type, (), {"Input": Input, "Output": Output, "io_type": io_type})


class _RecordingIO(types.ModuleType):
    def __init__(self):
        super().__init__("comfy_api.latest.io")

        class Schema:
            def __init__(self, **kwargs):
                self.__dict__.update(kwargs)
                self.kwargs = kwargs

        class ComfyNode:
            @classmethod
            def GET_SCHEMA(cls):  # noqa: N802 - ComfyUI's name
                return cls.define_schema()

        class NodeOutput:
            def __init__(self, *args, **kwargs):
                self.args = args

        self.Schema, self.ComfyNode, self.NodeOutput = Schema, ComfyNode, NodeOutput
        self.Hidden = types.SimpleNamespace(unique_id="UNIQUE_ID", prompt="PROMPT", extra_pnginfo="EXTRA_PNGINFO",
                                            dynprompt="DYNPROMPT", auth_token_comfy_org="AUTH_TOKEN_COMFY_ORG",
                                            api_key_comfy_org="API_KEY_COMFY_ORG")

    def Custom(self, io_type):  # noqa: N802 - ComfyUI's name
        return _io_class(io_type)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _io_class(_type_name(name))
        setattr(self, name, value)
        return value


# --------------------------------------------------------------------------- loading the pack


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, modules: dict):
        self.modules = modules

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in HOST_MODULES:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return self.modules.get(spec.name) or _StubModule(spec.name)

    def exec_module(self, module):
        pass


def _core_options(core_schema: dict, node: str, name: str) -> list:
    spec = core_schema[node]["input"]["required"][name]
    return list(spec[0]) if isinstance(spec[0], list) else list(spec[1]["options"])


def load_declared_nodes(core_schema: dict) -> list:
    """The pack's node classes (every module of ``NODE_MODULES``) imported against the stand-in host."""
    io = _RecordingIO()

    class KSampler:
        SAMPLERS = _core_options(core_schema, "KSampler", "sampler_name")
        SCHEDULERS = _core_options(core_schema, "KSampler", "scheduler")

    latest = _StubModule("comfy_api.latest", {"io": io, "ComfyExtension": type("ComfyExtension", (), {})})
    modules = {
        "comfy_api.latest": latest,
        "comfy_api.latest.io": io,
        "comfy.samplers": _StubModule("comfy.samplers", {"KSampler": KSampler, "SAMPLER_NAMES": KSampler.SAMPLERS,
                                                         "SCHEDULER_NAMES": KSampler.SCHEDULERS}),
        "folder_paths": _StubModule("folder_paths", {
            "get_filename_list": lambda *a, **k: [], "models_dir": "models",
            "folder_names_and_paths": collections.defaultdict(lambda: ([], set())),
        }),
    }
    name = "mdim_pack_declarations"
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in HOST_MODULES or k.startswith(name)}
    for key in saved:
        del sys.modules[key]
    finder = _StubFinder(modules)
    sys.meta_path.insert(0, finder)
    try:
        spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package
        spec.loader.exec_module(package)
        node_pkg = importlib.import_module(f"{name}.nodes")
        classes = []
        for module_name in node_pkg.NODE_MODULES:
            classes.extend(importlib.import_module(f"{name}.nodes.{module_name}").NODES)
        return classes
    finally:
        sys.meta_path.remove(finder)
        for key in [k for k in sys.modules if k.split(".")[0] in HOST_MODULES or k.startswith(name)]:
            del sys.modules[key]
        sys.modules.update(saved)


# keys of an input's options that a declaration sets, as 0.8.0 serialises them
OPTION_KEYS = ("default", "min", "max", "step", "round", "options", "tooltip", "multiline", "placeholder",
               "control_after_generate", "display_mode", "multiselect", "display_name")


def _input_spec(d: Declared) -> list:
    opts = {k: v for k, v in d.kwargs.items() if k in OPTION_KEYS and v is not None}
    if "display_mode" in opts:
        opts["display"] = str(getattr(opts.pop("display_mode"), "value", opts.get("display_mode")))
    if d.io_type == "COMBO":
        opts["options"] = list(opts.get("options", []))
        opts.setdefault("multiselect", False)
    return [d.io_type, opts]


def declared_object_info(classes: list) -> dict:
    """``{node_id: {...}}`` in the shape of ``/object_info`` for what the declarations control."""
    out = {}
    for cls in classes:
        s = cls.define_schema()
        required, optional, order = {}, {}, {"required": [], "optional": []}
        for d in s.inputs:
            section = "optional" if d.kwargs.get("optional") else "required"
            (optional if section == "optional" else required)[d.id] = _input_spec(d)
            order[section].append(d.id)
        hidden = [str(h) for h in (getattr(s, "hidden", None) or [])]
        outputs = list(getattr(s, "outputs", None) or [])
        out[s.node_id] = {
            "name": s.node_id,
            "display_name": s.display_name,
            "category": s.category,
            "description": getattr(s, "description", "") or "",
            "output_node": bool(getattr(s, "is_output_node", False)),
            "input": {"required": required, "optional": optional},
            "input_order": order,
            "hidden": hidden,
            "output": [o.io_type for o in outputs],
            "output_name": [o.kwargs.get("display_name") or o.id or o.io_type for o in outputs],
            "output_tooltips": [o.kwargs.get("tooltip") for o in outputs],
        }
    return out
