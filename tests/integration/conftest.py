"""Fixtures for tests that run the pack inside a real ComfyUI (0.8.0 to 0.28.0).

Every test in this folder is marked ``integration`` and skipped unless ``COMFYUI_DIR`` points at a
ComfyUI source tree whose requirements are installed in the Python running pytest. Nothing here
imports ``comfy`` unless a fixture that needs it runs, so the unit suite (CI) never touches it.
Test modules in this folder must not import ``comfy`` at module level either: use the
``inprocess_comfy`` fixture, or skip the module first when ``COMFYUI_DIR`` is unset.

Fixtures (see "Testing against a real ComfyUI" in README.md):
- ``tiny_checkpoints``: paths of the cached tiny random-weight SD1.5 checkpoints (standard, inpainting),
  of a tiny ControlNet for them, of a random-weight LaMa and of a stand-in ONNX text detector.
- ``comfy_server``: one ComfyUI server per session with the pack symlinked into ``custom_nodes`` and
  the tiny checkpoints and test images in place (a :class:`comfy_harness.ComfyServer`).
- ``comfy_run``: ``comfy_run(prompt, timeout=300) -> outputs``; ``comfy_images(outputs) -> [uint8 arrays]``.
- ``workflow_prompt``: ``workflow_prompt("name.json", **input_overrides) -> API prompt`` for a shipped workflow.
- ``comfy_add_model_file``: ``comfy_add_model_file(folder, name, source)`` links a model file into the server.
- ``test_images``: the input images (uint8 arrays) by file name.
- ``inprocess_comfy``: comfy imported in this process on CPU, with the pack loaded as a package.
- ``inprocess_checkpoint`` / ``inprocess_inpaint_checkpoint``: ``(MODEL, CLIP, VAE)`` of the tiny checkpoints.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from comfy_harness import (  # noqa: E402
    PACK_DIR_NAME,
    REPO_ROOT,
    ComfyServer,
    fetch_image,
    import_comfy_on_cpu,
    load_pack_in_process,
    output_images,
    run_prompt,
    start_server,
    stop_server,
)
from tiny_checkpoint import BUILDER_VERSION  # noqa: E402
from workflow_validation import shipped_workflows, shipped_workflows_dir, substitute_inputs, ui_to_api  # noqa: E402

COMFYUI_DIR = os.environ.get("COMFYUI_DIR", "")
FIRST_PORT = int(os.environ.get("MDIM_TEST_PORT", "18181"))
PORT_RANGE = range(FIRST_PORT, FIRST_PORT + 9)

# File names the server sees. Shipped workflows use the placeholder names; they are linked to the
# tiny checkpoints and generated images so workflows run unchanged.
CKPT_STANDARD = "mdim_tiny_sd15.safetensors"
CKPT_INPAINT = "mdim_tiny_sd15_inpainting.safetensors"
CONTROLNET = "mdim_tiny_sd15_controlnet.safetensors"
CKPT_PLACEHOLDERS = {"sd15_mdim_zsnr_vpred.safetensors": CKPT_STANDARD}
PAGE_SIZE = (164, 132)  # (H, W): deliberately not multiples of 8


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="COMFYUI_DIR is not set: real-host tests skipped")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)
            if not COMFYUI_DIR:
                item.add_marker(skip)


def _require_comfyui() -> Path:
    if not COMFYUI_DIR:
        pytest.skip("COMFYUI_DIR is not set")
    path = Path(COMFYUI_DIR).resolve()
    if not (path / "main.py").is_file() or not (path / "comfy").is_dir():
        pytest.fail(f"COMFYUI_DIR={COMFYUI_DIR} is not a ComfyUI source tree (no main.py / comfy/)")
    return path


# --------------------------------------------------------------------------- checkpoints


def cache_dir() -> Path:
    path = Path(os.environ.get("MDIM_TEST_CACHE") or Path.home() / ".cache" / "mdim-tests")
    path.mkdir(parents=True, exist_ok=True)
    return path


CHECKPOINT_KINDS = {"standard": [], "inpainting": ["--inpaint"], "controlnet": ["--controlnet"]}


def build_tiny_checkpoint(comfyui_dir: Path, kind: str) -> Path:
    """Path of a cached tiny model file (``standard``, ``inpainting`` or ``controlnet``).

    Built once, in a subprocess (~25 s), if missing; concurrent builders never clash.
    """
    path = cache_dir() / f"tiny_sd15_{kind}_v{BUILDER_VERSION}.safetensors"
    if not path.is_file():
        cmd = [sys.executable, str(HERE / "tiny_checkpoint.py"), "--comfyui-dir", str(comfyui_dir)]
        cmd += ["--out", str(path), *CHECKPOINT_KINDS[kind]]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if result.returncode != 0 or not path.is_file():
            raise RuntimeError(
                f"building {path.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
    return path


def build_lama_file() -> Path:
    """A LaMa file with random weights (big-lama's architecture, float16 .safetensors, ~100 MB), cached."""
    path = cache_dir() / "lama_random_v1.safetensors"
    if not path.is_file():
        from lama_nets import random_lama
        from safetensors.torch import save_file

        sd = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in random_lama(0).state_dict().items()}
        part = path.with_name(path.name + f".{os.getpid()}.part")
        save_file(sd, str(part))
        os.replace(part, path)  # concurrent builders never clash
    return path


#: The stand-in detector's one "text_bubble" box, normalised (x0, y0, x1, y1): the text rows of the example page.
DETECTOR_TEXT_BOX = (12 / PAGE_SIZE[1], 10 / PAGE_SIZE[0], (PAGE_SIZE[1] - 18) / PAGE_SIZE[1], (PAGE_SIZE[0] // 2 - 8) / PAGE_SIZE[0])


def build_detector_file() -> Path | None:
    """A tiny ONNX model with the RT-DETR comic detector's signature (``tests/tiny_detector.py``), cached.

    Its one box is a "text_bubble" over the text rows of the example page, scored by the image's mean
    (a white page scores high). None without the ``onnx`` package (the detector workflow then fails).
    """
    path = cache_dir() / "tiny_text_detector_v1.onnx"
    if not path.is_file():
        try:
            from tiny_detector import tiny_detector
        except ImportError:
            return None
        part = path.with_name(path.name + f".{os.getpid()}.part")
        tiny_detector(part, np.array([DETECTOR_TEXT_BOX]), np.array([1]))
        os.replace(part, path)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoints() -> dict[str, Path]:
    """``{"standard", "inpainting", "controlnet", "lama", "detector"}`` -> path of the tiny model files (cached)."""
    comfyui_dir = _require_comfyui()
    paths = {kind: build_tiny_checkpoint(comfyui_dir, kind) for kind in CHECKPOINT_KINDS}
    paths["lama"] = build_lama_file()
    detector = build_detector_file()
    if detector is not None:
        paths["detector"] = detector
    return paths


# --------------------------------------------------------------------------- test images


def make_test_images(height: int = PAGE_SIZE[0], width: int = PAGE_SIZE[1]) -> dict[str, np.ndarray]:
    """Small deterministic manga-like inputs (uint8): a page, a text mask, an aged scan of the page.

    The mask file is RGBA: white RGB and alpha 0 inside the hole, so every way of reading it gives
    1 inside the hole (LoadImage's MASK output, LoadImageMask on red/green/blue/alpha).
    """
    rng = np.random.default_rng(1234)
    yy, xx = np.mgrid[0:height, 0:width]
    page = np.full((height, width), 255, np.uint8)
    page[:3], page[-3:], page[:, :3], page[:, -3:] = 0, 0, 0, 0  # panel border
    page[height // 2 - 2 : height // 2 + 2] = 0  # gutter line
    # screentone: round dots on a rotated grid in the lower panel
    u = (xx * np.cos(0.785) + yy * np.sin(0.785)) / 6.0
    v = (-xx * np.sin(0.785) + yy * np.cos(0.785)) / 6.0
    dots = ((u - np.round(u)) ** 2 + (v - np.round(v)) ** 2) < 0.12
    lower = (yy > height // 2 + 4) & (yy < height - 6) & (xx > 6) & (xx < width - 6)
    page[lower & dots] = 0
    # "text": short black strokes in the upper panel
    mask = np.zeros((height, width), bool)
    for row in range(14, height // 2 - 14, 12):
        for col in range(16, width - 24, 10):
            page[row : row + 7, col : col + 2] = 0
            page[row + 3 : row + 5, col : col + 6] = 0
        mask[row - 3 : row + 10, 12 : width - 18] = True
    page_rgb = np.repeat(page[..., None], 3, axis=2)
    mask_rgba = np.zeros((height, width, 4), np.uint8)
    mask_rgba[mask] = (255, 255, 255, 0)
    mask_rgba[~mask] = (0, 0, 0, 255)
    tint = np.array([0.96, 0.90, 0.74])
    light = 0.85 + 0.15 * np.sin(xx / width * np.pi)[..., None]
    old = page_rgb.astype(np.float64) * tint * light + rng.normal(0, 6.0, page_rgb.shape)
    old = np.clip(old + (255 - page_rgb) * 0.08, 0, 255).astype(np.uint8)
    # translated SFX to paste: black block letters with a white outline on a transparent background
    sfx = np.zeros((40, 64, 4), np.uint8)
    ink = np.zeros((40, 64), bool)
    for x0 in (4, 24, 44):  # three letters: two bars and a diagonal each
        ink[6:34, x0 : x0 + 5] = True
        ink[6:11, x0 : x0 + 16] = True
        for i in range(16):
            ink[8 + i + 4 : 8 + i + 9, x0 + i : x0 + i + 2] = True
    outline = np.zeros_like(ink)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            outline |= np.roll(np.roll(ink, dy, 0), dx, 1)
    sfx[outline] = (255, 255, 255, 255)
    sfx[ink] = (0, 0, 0, 255)
    return {
        "mdim_example_page.png": page_rgb,
        "mdim_example_mask.png": mask_rgba,
        "mdim_example_old_scan.png": old,
        "mdim_example_sfx_translated.png": sfx,
    }


@pytest.fixture(scope="session")
def test_images() -> dict[str, np.ndarray]:
    """The images placed in the server's input/ folder, by file name (uint8 arrays)."""
    return make_test_images()


# --------------------------------------------------------------------------- server


def _free_ports():
    """Ports of PORT_RANGE nobody listens on right now, in order."""
    for port in PORT_RANGE:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        yield port


def workflow_file_names() -> dict[str, set[str]]:
    """Model file names the shipped workflows ask for: ``{"checkpoints": {...}, "controlnet": {...}, "inpaint": {...}}``."""
    wanted: dict[str, set[str]] = {"checkpoints": set(), "controlnet": set(), "inpaint": set(), "mdim": set()}
    loaders = {"CheckpointLoaderSimple": "checkpoints", "ControlNetLoader": "controlnet", "MDIM_LamaLoader": "inpaint",
               "MDIM_TextDetectorLoader": "mdim"}
    for path in shipped_workflows():
        try:
            workflow = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # reported by tests/test_workflows.py
        for node in workflow.get("nodes", []) if isinstance(workflow, dict) else []:
            folder = loaders.get(node.get("type"))
            values = node.get("widgets_values") or []
            if folder and values and isinstance(values[0], str):
                wanted[folder].add(values[0])
    return wanted


def prepare_base_dir(base: Path, checkpoints: dict[str, Path], images: dict[str, np.ndarray]) -> dict:
    """Lay out a ComfyUI base directory: the pack, the tiny models and the test images.

    The model names the shipped workflows use are linked to the tiny files (names containing
    "inpaint" to the 9-channel checkpoint), so the workflows run unchanged.
    """
    from PIL import Image

    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    (base / "custom_nodes" / PACK_DIR_NAME).symlink_to(REPO_ROOT, target_is_directory=True)
    links = {
        ("checkpoints", CKPT_STANDARD): checkpoints["standard"],
        ("checkpoints", CKPT_INPAINT): checkpoints["inpainting"],
        ("controlnet", CONTROLNET): checkpoints["controlnet"],
    }
    wanted = workflow_file_names()
    for name in wanted["checkpoints"] | set(CKPT_PLACEHOLDERS):
        links.setdefault(
            ("checkpoints", name), checkpoints["inpainting" if "inpaint" in name else "standard"]
        )
    for name in wanted["controlnet"]:
        links.setdefault(("controlnet", name), checkpoints["controlnet"])
    for name in wanted["inpaint"]:
        if "lama" in checkpoints:
            links.setdefault(("inpaint", name), checkpoints["lama"])
    for name in wanted["mdim"]:  # .onnx detectors
        if "detector" in checkpoints:
            links.setdefault(("mdim", name), checkpoints["detector"])
    for (folder, name), target in links.items():
        (base / "models" / folder).mkdir(parents=True, exist_ok=True)
        (base / "models" / folder / name).symlink_to(target)
    input_dir = base / "input"
    input_dir.mkdir(parents=True, exist_ok=True)
    for name, array in images.items():
        Image.fromarray(array).save(input_dir / name)
    return {"standard": CKPT_STANDARD, "inpainting": CKPT_INPAINT, "controlnet": CONTROLNET}


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory, tiny_checkpoints, test_images) -> ComfyServer:
    """One ComfyUI server for the whole session, started with the Python running pytest."""
    comfyui_dir = _require_comfyui()
    base = tmp_path_factory.mktemp("comfy_base")
    checkpoint_names = prepare_base_dir(base, tiny_checkpoints, test_images)
    server = None
    for port in _free_ports():
        try:
            server = start_server(comfyui_dir, base, port, python=sys.executable)
            break
        except RuntimeError as exc:  # another run took the port between the check and the start
            if "address already in use" not in str(exc).lower():
                raise
    if server is None:
        raise RuntimeError(f"no free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1} (set MDIM_TEST_PORT)")
    server.checkpoints = dict(checkpoint_names)
    server.input_files = {name: name for name in test_images}
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def comfy_add_model_file(comfy_server):
    """``comfy_add_model_file(folder, name, source) -> name``: link a file into the server's models/<folder>.

    The host re-lists model folders when they change, so the file is usable in the next prompt
    (e.g. Symmetric VAE adapters in ``models/mdim``). An existing link of that name is replaced.
    """

    def _add(folder: str, name: str, source: str | os.PathLike) -> str:
        dest = comfy_server.base_dir / "models" / folder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        dest.symlink_to(Path(source).resolve())
        return name

    return _add


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and "comfy_server" in getattr(item, "funcargs", {}):
        server = item.funcargs["comfy_server"]
        try:
            report.sections.append(("ComfyUI server log (tail)", server.log_tail(60)))
        except OSError:
            pass


@pytest.fixture(scope="session")
def comfy_run(comfy_server):
    """``comfy_run(prompt, timeout=300) -> history outputs`` on the session server."""

    def _run(prompt: dict, timeout: float = 300.0) -> dict:
        return run_prompt(comfy_server, prompt, timeout=timeout)

    return _run


@pytest.fixture(scope="session")
def comfy_images(comfy_server):
    """``comfy_images(outputs) -> [uint8 [H, W, C] arrays]`` of every image in a prompt's outputs."""

    def _images(outputs: dict) -> list[np.ndarray]:
        return [fetch_image(comfy_server, ref) for ref in output_images(outputs)]

    return _images


def load_workflow(name: str) -> dict:
    path = shipped_workflows_dir() / name
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def workflow_prompt(comfy_server):
    """``workflow_prompt(name, **overrides) -> API prompt`` of ``workflows/<name>``.

    Converted with the live server's /object_info. ``overrides`` replace widget values by input
    name in every node that has them (e.g. ``steps=2``, ``ckpt_name="mdim_tiny_sd15_inpainting.safetensors"``).
    """

    def _prompt(name: str, **overrides) -> dict:
        prompt = ui_to_api(load_workflow(name), comfy_server.object_info())
        return substitute_inputs(prompt, overrides) if overrides else prompt

    return _prompt


# --------------------------------------------------------------------------- in-process comfy


@pytest.fixture(scope="session")
def inprocess_comfy(tmp_path_factory) -> types.SimpleNamespace:
    """ComfyUI imported in this process (CPU) and the pack loaded as a package.

    Returns a namespace with ``comfy_dir``, ``pack`` (the package module, named
    ``mdim_pack_under_test``: import submodules as ``mdim_pack_under_test.nodes.x``), ``nodes``
    (node id -> V3 node class, as the pack's extension lists them) and ``run(node_id, **inputs)``,
    which executes a node under ``torch.inference_mode()`` as the host does and returns its outputs.
    ComfyUI's output, temp, input and user folders point into ``scratch`` (a temporary folder).
    (Host code such as ``VAE.encode_tiled`` fails outside inference mode.)
    """
    comfyui_dir = _require_comfyui()
    import_comfy_on_cpu(comfyui_dir)
    import torch

    torch.set_num_threads(1)
    import comfy.model_management  # noqa: F401 - device selection happens here, on CPU
    import folder_paths

    # Files a node writes in-process go to a temporary folder, never into the user's ComfyUI.
    scratch = tmp_path_factory.mktemp("inprocess_comfy")
    for name, setter in (
        ("output", folder_paths.set_output_directory),
        ("temp", folder_paths.set_temp_directory),
        ("input", folder_paths.set_input_directory),
        ("user", folder_paths.set_user_directory),
    ):
        (scratch / name).mkdir()
        setter(str(scratch / name))

    pack = load_pack_in_process()
    extension = asyncio.run(pack.comfy_entrypoint())
    node_list = asyncio.run(extension.get_node_list())
    nodes = {cls.define_schema().node_id: cls for cls in node_list}

    def run(node, **inputs) -> tuple:
        """Execute a node (class or id) as the host does, under ``torch.inference_mode()``; its outputs."""
        cls = nodes[node] if isinstance(node, str) else node
        with torch.inference_mode():
            return tuple(cls.execute(**inputs).args)

    return types.SimpleNamespace(comfy_dir=comfyui_dir, pack=pack, nodes=nodes, run=run, scratch=scratch)


def _load_checkpoint(path: Path):
    import comfy.sd

    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(path))
    return model, clip, vae


@pytest.fixture(scope="session")
def inprocess_checkpoint(inprocess_comfy, tiny_checkpoints):
    """``(MODEL, CLIP, VAE)`` of the tiny standard SD1.5 checkpoint, loaded in-process."""
    return _load_checkpoint(tiny_checkpoints["standard"])


@pytest.fixture(scope="session")
def inprocess_inpaint_checkpoint(inprocess_comfy, tiny_checkpoints):
    """``(MODEL, CLIP, VAE)`` of the tiny 9-channel inpainting checkpoint, loaded in-process."""
    return _load_checkpoint(tiny_checkpoints["inpainting"])


# --------------------------------------------------------------------------- progress


@pytest.fixture
def progress_spy(inprocess_comfy, monkeypatch):
    """What in-process node runs report on the progress bar, before and after the host's throttling.

    ComfyUI 0.8.0 passes every ``ProgressBar.update_absolute`` on to the progress hook (the UI); newer
    hosts (0.28.0) pass on the first, the last, those with a preview and at most one per 100 ms, so a
    hook alone cannot tell what a node reports. Returns a namespace:

    - ``reported``: ``(value, total, preview)`` of every update on a bar opened while the hook was set
      (the bars the user sees; bars opened with the hook removed, such as ComfyUI's tiled VAE bars that
      SGIM silences, are left out), in order, as the node made them;
    - ``shown``: ``(value, total, preview)`` that reached the hook, i.e. the UI, after throttling;
    - ``hook``: the hook that was set (``comfy.utils.PROGRESS_BAR_HOOK`` is it unless a node swapped it);
    - ``on_report``: set to ``f(value)`` to act on an update as the node makes it (e.g. press Cancel).

    The hook and the spy are removed after the test.
    """
    import comfy.utils

    rec = types.SimpleNamespace(reported=[], shown=[], on_report=None)
    original = comfy.utils.ProgressBar.update_absolute

    def update_absolute(self, value, total=None, preview=None):
        if self.hook is not None:
            rec.reported.append((value, self.total if total is None else total, preview))
            if rec.on_report is not None:
                rec.on_report(value)
        return original(self, value, total, preview)

    def hook(value, total, preview, node_id=None, **_):
        rec.shown.append((value, total, preview))

    rec.hook = hook
    monkeypatch.setattr(comfy.utils.ProgressBar, "update_absolute", update_absolute)
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", hook)
    return rec
