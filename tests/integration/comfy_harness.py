"""Helpers to drive a real ComfyUI from tests: start a server, run prompts, read images back.

Nothing here imports ``comfy`` at module level; :func:`import_comfy_on_cpu` does it on request.
The fixtures in ``conftest.py`` wrap these helpers; test files in this folder can also import
them directly (``from comfy_harness import run_prompt``).
"""

from __future__ import annotations

import atexit
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
PACK_DIR_NAME = "ComfyUI-MDIM"


def import_comfy_on_cpu(comfyui_dir: str | os.PathLike) -> None:
    """Make ``comfy`` importable from ``comfyui_dir`` and force its CPU mode.

    ComfyUI parses ``sys.argv`` only when ``comfy.options.enable_args_parsing()`` was called
    (main.py does); otherwise it parses an empty list. This never enables it, so pytest's own
    command line is never read. ``--cpu`` is then set on the parsed defaults before
    ``comfy.model_management`` picks a device.
    """
    comfyui_dir = os.path.abspath(os.fspath(comfyui_dir))
    if comfyui_dir not in sys.path:
        sys.path.insert(0, comfyui_dir)
    import comfy.options

    if comfy.options.args_parsing:
        raise RuntimeError("comfy.options.args_parsing is enabled: ComfyUI would parse this process' argv")
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    if "comfy.model_management" in sys.modules:
        import comfy.model_management

        if comfy.model_management.cpu_state != comfy.model_management.CPUState.CPU:
            raise RuntimeError("comfy.model_management was imported before CPU mode was set")


PACK_MODULE_NAME = "mdim_pack_under_test"


def load_pack_in_process():
    """Import the repository as a package named ``mdim_pack_under_test``, as ComfyUI does with a custom node
    folder (its submodules import each other relatively). Call :func:`import_comfy_on_cpu` first."""
    import importlib.util

    if PACK_MODULE_NAME in sys.modules:
        return sys.modules[PACK_MODULE_NAME]
    spec = importlib.util.spec_from_file_location(
        PACK_MODULE_NAME, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- server


@dataclass
class ComfyServer:
    """A running ComfyUI server started by :func:`start_server`."""

    url: str
    base_dir: Path
    log_path: Path
    process: subprocess.Popen
    checkpoints: dict = field(default_factory=dict)  # role -> file name in models/checkpoints
    input_files: dict = field(default_factory=dict)  # role -> file name in input/
    _object_info: dict | None = None

    def get_json(self, path: str, timeout: float = 30.0):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return json.loads(resp.read())

    def post_json(self, path: str, payload: dict, timeout: float = 30.0):
        data = json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            try:
                answer = json.loads(body)
            except ValueError:
                answer = None
            node_errors = answer.get("node_errors") if isinstance(answer, dict) else None
            raise PromptError(f"POST {path} -> HTTP {exc.code}: {body}", node_errors=node_errors or None,
                              answer=answer) from None

    def object_info(self) -> dict:
        if self._object_info is None:
            self._object_info = self.get_json("/object_info", timeout=120.0)
        return self._object_info

    def version(self) -> tuple[int, ...]:
        """The host's ComfyUI version, e.g. ``(0, 28, 0)`` (from ``/system_stats``)."""
        text = self.get_json("/system_stats")["system"]["comfyui_version"]
        return tuple(int(part) for part in text.split("-")[0].split(".")[:3])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def startup_log(self) -> str:
        """The log up to "Starting server": node loading, before any prompt ran."""
        text = self.log_text()
        end = text.find("Starting server")
        return text if end < 0 else text[:end]

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class PromptError(RuntimeError):
    """The server rejected a prompt or its execution failed.

    ``node_errors``: the validation errors of a rejected prompt (node id -> errors), else None;
    ``error``: the ``execution_error`` message of a failed run (``node_id``, ``node_type``,
    ``exception_type``, ``exception_message``, ``traceback``...), else None; ``status``: its history status.
    """

    def __init__(self, message: str, *, node_errors=None, error=None, status=None, answer=None):
        super().__init__(message)
        self.node_errors = node_errors
        self.error = error
        self.status = status
        self.answer = answer


def start_server(
    comfyui_dir: str | os.PathLike,
    base_dir: str | os.PathLike,
    port: int,
    python: str = sys.executable,
    startup_timeout: float = 240.0,
    extra_args: tuple[str, ...] = (),
) -> ComfyServer:
    """Start ``main.py --cpu`` on 127.0.0.1:port with ``base_dir`` and wait for /object_info."""
    base_dir = Path(base_dir).resolve()
    for sub in ("custom_nodes", "input", "output", "temp", "user", "models/checkpoints"):
        (base_dir / sub).mkdir(parents=True, exist_ok=True)  # main.py requires custom_nodes/
    log_path = base_dir / "server.log"
    cmd = [
        python,
        "main.py",
        "--cpu",
        "--listen",
        "127.0.0.1",
        "--port",
        str(port),
        "--base-directory",
        str(base_dir),
        "--database-url",
        "sqlite:///:memory:",
        "--disable-auto-launch",
        *extra_args,
    ]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    log_file = open(log_path, "wb")  # noqa: SIM115 - kept open for the server's lifetime
    process = subprocess.Popen(
        cmd, cwd=os.fspath(comfyui_dir), stdout=log_file, stderr=subprocess.STDOUT, env=env,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    log_file.close()
    atexit.register(_terminate, process)  # never leave a server behind, even if teardown is skipped
    server = ComfyServer(
        url=f"http://127.0.0.1:{port}", base_dir=base_dir, log_path=log_path, process=process
    )
    deadline = time.monotonic() + startup_timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"ComfyUI exited with {process.returncode} during start-up:\n{server.log_tail()}"
            )
        try:
            # Another program may answer on this port (a server started elsewhere on the same port, before
            # ours fails to bind it): only the server started with this base directory counts.
            if is_own_server(server, port):
                server.object_info()
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            pass
        if time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(
                f"ComfyUI did not answer /object_info in {startup_timeout:.0f}s:\n{server.log_tail()}"
            )
        time.sleep(1.0)


def is_own_server(server: ComfyServer, port: int) -> bool:
    """True when the server answering at ``server.url`` is the one :func:`start_server` launched: its
    ``/system_stats`` command line names this base directory and port, and our process is still running.

    Raises ``URLError``/``ConnectionError`` while nothing answers yet.
    """
    stats = server.get_json("/system_stats", timeout=10.0)
    argv = [str(a) for a in stats.get("system", {}).get("argv", [])]
    ours = _arg(argv, "--base-directory") == str(server.base_dir) and _arg(argv, "--port") == str(port)
    return ours and server.process.poll() is None


def _arg(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the server gets SIGTERM when the test process dies, even when killed without cleanup."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def stop_server(server: ComfyServer) -> None:
    _terminate(server.process)


def _terminate(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


def import_failures(log_text: str) -> list[str]:
    """Lines of the host log that report a custom node pack failing to import (``(IMPORT FAILED): .../custom_nodes/X``).

    Core extras that miss an optional dependency (``IMPORT FAILED: nodes_audio.py`` without torchaudio) are
    the host's own business and are not counted."""
    return [line for line in log_text.splitlines() if "IMPORT FAILED" in line and "custom_nodes" in line]


def tracebacks(log_text: str) -> list[str]:
    """The Python tracebacks in a host log, each up to and including its exception line."""
    blocks, current = [], None
    for line in log_text.splitlines():
        if line.startswith("Traceback (most recent call last):"):
            current = [line]
        elif current is not None:
            current.append(line)
            if line and not line[0].isspace():  # the exception line ends the traceback
                blocks.append("\n".join(current))
                current = None
    if current is not None:
        blocks.append("\n".join(current))
    return blocks


# --------------------------------------------------------------------------- prompts


def run_prompt(server: ComfyServer, prompt: dict, timeout: float = 300.0) -> dict:
    """Queue an API-format prompt, wait for it and return its history ``outputs`` (node id -> dict).

    Raises :class:`PromptError` with the server's message when validation or execution fails.
    """
    client_id = uuid.uuid4().hex
    answer = server.post_json("/prompt", {"prompt": prompt, "client_id": client_id})
    if answer.get("node_errors"):
        raise PromptError(f"prompt rejected: {json.dumps(answer['node_errors'], indent=1)}",
                          node_errors=answer["node_errors"], answer=answer)
    prompt_id = answer["prompt_id"]
    deadline = time.monotonic() + timeout
    while True:
        history = server.get_json(f"/history/{prompt_id}")
        entry = history.get(prompt_id)
        if entry is not None:
            status = entry.get("status", {})
            if status.get("status_str") == "error" or not status.get("completed", True):
                messages = [m for m in status.get("messages", []) if m[0] == "execution_error"]
                detail = json.dumps(messages, indent=1) if messages else json.dumps(status, indent=1)
                raise PromptError(
                    f"prompt {prompt_id} failed: {detail}\n--- server log ---\n{server.log_tail(40)}",
                    error=messages[0][1] if messages else None, status=status,
                )
            return entry.get("outputs", {})
        if server.process.poll() is not None:
            raise PromptError(f"ComfyUI exited while running the prompt:\n{server.log_tail()}")
        if time.monotonic() > deadline:
            server.post_json("/interrupt", {})
            raise PromptError(f"prompt {prompt_id} did not finish in {timeout:.0f}s:\n{server.log_tail(40)}")
        time.sleep(0.25)


def output_images(outputs: dict) -> list[dict]:
    """All image references (``{"filename", "subfolder", "type"}``) in a history ``outputs`` dict."""
    refs = []
    for node_id in sorted(outputs, key=lambda k: (len(k), k)):
        refs.extend(outputs[node_id].get("images", []))
    return refs


def fetch_image(server: ComfyServer, ref: dict) -> np.ndarray:
    """Download an output image through ``/view``: uint8 ``[H, W, C]`` exactly as saved."""
    from PIL import Image

    query = urllib.parse.urlencode(
        {
            "filename": ref["filename"],
            "subfolder": ref.get("subfolder", ""),
            "type": ref.get("type", "output"),
        }
    )
    with urllib.request.urlopen(f"{server.url}/view?{query}", timeout=60) as resp:
        data = resp.read()
    with Image.open(io.BytesIO(data)) as img:
        return np.array(img)
