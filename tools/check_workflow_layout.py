"""Open every shipped workflow in a real ComfyUI frontend and check that no two nodes overlap.

Not part of CI (it needs a ComfyUI checkout with its frontend package, and Chromium with chromedriver).
It starts ComfyUI with this pack linked into ``custom_nodes`` (a throw-away base directory: placeholder model
files and example images in place, so loaders show the names the workflows use), opens the editor in
headless Chromium through chromedriver (plain WebDriver over HTTP, standard library only), loads each
workflow with ``app.loadGraphData`` and reads every node's rectangle from the frontend's own graph
(``app.graph._nodes``: ``pos``, ``size`` and the title bar above ``pos``). Two rectangles that share
any area are an overlap; the script prints each workflow's closest pair and exits with 1 on an overlap.

    python tools/check_workflow_layout.py --comfyui-dir /path/to/ComfyUI --python /path/to/venv/bin/python
    python tools/check_workflow_layout.py ... --screenshot mdim_sgim_text_removal.json --scale-factor 2 \\
        --screenshot-width 1600 --screenshot-out docs/images/workflow_sgim_text_removal.png

Chromium: Debian's ``chromium`` and ``chromium-driver`` packages (``--chromium``/``--chromedriver`` to
point elsewhere). The host's Python must have ComfyUI's requirements (it runs ``main.py``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "tests"))

from comfy_harness import PACK_DIR_NAME, import_failures, start_server, stop_server  # noqa: E402
from workflow_validation import host_version, shipped_workflows  # noqa: E402

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
#: settings that keep first-run dialogs (templates browser, tutorials) from covering the canvas
QUIET_SETTINGS = {
    "Comfy.TutorialCompleted": True,
    "Comfy.InstalledVersion": "99.0.0",
    "Comfy.Workflow.ShowMissingModelsWarning": False,
    "Comfy.Workflow.ShowMissingNodesWarning": False,
    "Comfy.Minimap.Visible": False,
}
LOADERS = {"CheckpointLoaderSimple": "checkpoints", "ControlNetLoader": "controlnet"}

# Runs in the page: the rectangle of every node as the frontend holds it, title bar included.
COLLECT_JS = """
const graph = window.app.graph;
const LG = window.LiteGraph || (window.comfyAPI && window.comfyAPI.litegraph && window.comfyAPI.litegraph.LiteGraph);
const titleHeight = (LG && LG.NODE_TITLE_HEIGHT) || 30;
return graph._nodes.map((n) => {
  const collapsed = !!(n.flags && n.flags.collapsed);
  const th = n.constructor.title_mode === (LG && LG.NO_TITLE) ? 0 : titleHeight;
  return {id: n.id, type: n.type, title: n.title, pos: [n.pos[0], n.pos[1]], size: [n.size[0], n.size[1]],
          title_height: th, collapsed: collapsed,
          min_size: (typeof n.computeSize === 'function') ? Array.from(n.computeSize()) : null};
});
"""


# --------------------------------------------------------------------------- WebDriver (HTTP, JSON)


class WebDriver:
    """The few W3C WebDriver commands this script needs, against a running chromedriver."""

    def __init__(self, url: str, chromium: str, window: tuple[int, int], scale_factor: float = 1.0):
        self.url = url
        args = CHROMIUM_FLAGS + [f"--window-size={window[0]},{window[1]}", f"--force-device-scale-factor={scale_factor}"]
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": {"binary": chromium, "args": args},
        }}}  # fmt: skip
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, payload: dict | None = None, timeout: float = 120.0):
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read())["value"]
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"WebDriver {method} {path}: {exc.read().decode(errors='replace')[:2000]}") from None

    def cmd(self, method: str, path: str, payload: dict | None = None, timeout: float = 120.0):
        return self._call(method, f"/session/{self.session}{path}", payload, timeout)

    def get(self, url: str) -> None:
        self.cmd("POST", "/url", {"url": url})

    def script(self, body: str, *args):
        return self.cmd("POST", "/execute/sync", {"script": body, "args": list(args)})

    def async_script(self, body: str, *args, timeout_ms: int = 60000):
        self.cmd("POST", "/timeouts", {"script": timeout_ms})
        return self.cmd("POST", "/execute/async", {"script": body, "args": list(args)})

    def screenshot(self) -> bytes:
        return base64.b64decode(self.cmd("GET", "/screenshot"))

    def quit(self) -> None:
        with contextlib.suppress(Exception):
            self._call("DELETE", f"/session/{self.session}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_chromedriver(binary: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([binary, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(url + "/status", timeout=2) as resp:
                if json.loads(resp.read())["value"].get("ready"):
                    return proc, url
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("chromedriver did not start")


# --------------------------------------------------------------------------- the host


def prepare_base_dir(base: Path, workflows: list[Path]) -> None:
    """custom_nodes/<pack> -> this repository; the model names the workflows use as empty files; example inputs."""
    (base / "custom_nodes").mkdir(parents=True)
    (base / "custom_nodes" / PACK_DIR_NAME).symlink_to(REPO, target_is_directory=True)
    for path in workflows:
        for node in json.loads(path.read_text(encoding="utf-8"))["nodes"]:
            folder = LOADERS.get(node["type"])
            if folder:
                (base / "models" / folder).mkdir(parents=True, exist_ok=True)
                (base / "models" / folder / node["widgets_values"][0]).touch()
    write_example_inputs(base / "input")


def write_example_inputs(folder: Path) -> None:
    """``mdim_example_page.png`` (a generated page with text), its text mask and an aged copy, at screen size."""
    sys.path.insert(0, str(REPO))
    import numpy as np
    from PIL import Image

    from mdim_core.synth import aging, page

    folder.mkdir(parents=True, exist_ok=True)
    synth = page.generate_page(7, size=(1100, 780), dpi=150)
    to_u8 = lambda a: (np.clip(a, 0, 1) * 255).round().astype(np.uint8)  # noqa: E731
    Image.fromarray(to_u8(synth.page)).convert("RGB").save(folder / "mdim_example_page.png")
    Image.fromarray(synth.removable.astype(np.uint8) * 255).convert("RGB").save(folder / "mdim_example_mask.png")
    old = aging.age_page(synth.clean, seed=7, dpi=150)
    Image.fromarray(to_u8(old)).save(folder / "mdim_example_old_scan.png")


def set_settings(url: str, settings: dict) -> None:
    for key, value in settings.items():
        req = urllib.request.Request(f"{url}/settings/{key}", data=json.dumps(value).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with contextlib.suppress(urllib.error.URLError):
            urllib.request.urlopen(req, timeout=10).close()


# --------------------------------------------------------------------------- the check


def rects(nodes: list[dict]) -> list[tuple]:
    """``(x0, y0, x1, y1, node)`` per node: the title bar sits above ``pos``."""
    out = []
    for n in nodes:
        x, y = n["pos"]
        w, h = n["size"]
        top = y - n["title_height"]
        bottom = y if n["collapsed"] else y + h
        out.append((x, top, x + w, bottom, n))
    return out


def overlaps(nodes: list[dict]) -> tuple[list[tuple], float]:
    """Pairs of nodes whose rectangles share area, and the smallest gap between any two (negative: overlap)."""
    found, closest = [], float("inf")
    boxes = rects(nodes)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            dx = max(b[0] - a[2], a[0] - b[2])
            dy = max(b[1] - a[3], a[1] - b[3])
            gap = max(dx, dy)
            closest = min(closest, gap)
            if gap < 0:
                found.append((a[4], b[4], -dx, -dy))
    return found, closest


def load_and_collect(driver: WebDriver, path: Path) -> list[dict]:
    workflow = json.loads(path.read_text(encoding="utf-8"))
    return driver.async_script(
        """
const [wf, name, done] = arguments;
const settle = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 300))));
Promise.resolve(window.app.loadGraphData(wf, true, true, name))
  .then(settle)
  .then(() => { window.app.graph.setDirtyCanvas(true, true); return settle(); })
  .then(() => done((function () {""" + COLLECT_JS + """})()))
  .catch((e) => done({error: String(e && e.stack || e)}));
""",
        workflow,
        path.name,
    )


def wait_for_app(driver: WebDriver, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(RuntimeError):
            ready = driver.script(
                "return !!(window.app && window.app.graph && window.app.canvas) && "
                "(window.__COMFYUI_FRONTEND_VERSION__ || (window.comfyAPI && 'unknown') || 'unknown');"
            )
            if ready:
                return str(ready)
        time.sleep(1.0)
    raise RuntimeError("the ComfyUI editor did not come up in the browser")


def screenshot_graph(driver: WebDriver, path: Path, out: Path, margin: int = 24, max_width: int = 0) -> None:
    """Fit the loaded graph into the window, take a screenshot, crop it to the nodes (plus a margin) and
    scale it down to ``max_width`` pixels if wider (0: as taken)."""
    from PIL import Image

    load_and_collect(driver, path)
    box = driver.async_script(
        """
const done = arguments[arguments.length - 1];
const app = window.app, canvas = app.canvas, ds = canvas.ds;
const nodes = app.graph._nodes;
const LG = window.LiteGraph || (window.comfyAPI && window.comfyAPI.litegraph && window.comfyAPI.litegraph.LiteGraph);
const th = (LG && LG.NODE_TITLE_HEIGHT) || 30;
let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
for (const n of nodes) {
  x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - th);
  x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
}
const el = canvas.canvas, rect = el.getBoundingClientRect();
// keep clear of the menus, tabs and side bar drawn over the canvas
const pad = {left: 110, right: 50, top: 140, bottom: 60};
const w = rect.width - pad.left - pad.right, h = rect.height - pad.top - pad.bottom;
const scale = Math.min(1.0, w / (x1 - x0), h / (y1 - y0));
ds.scale = scale;
ds.offset[0] = (pad.left + (w - (x1 - x0) * scale) / 2) / scale - x0;
ds.offset[1] = (pad.top + (h - (y1 - y0) * scale) / 2) / scale - y0;
canvas.setDirty(true, true);
requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(() => {
  const tl = ds.convertOffsetToCanvas([x0, y0]), br = ds.convertOffsetToCanvas([x1, y1]);
  done({left: rect.left + tl[0], top: rect.top + tl[1], right: rect.left + br[0], bottom: rect.top + br[1],
        dpr: window.devicePixelRatio || 1});
}, 1500)));
"""
    )
    image = Image.open(io.BytesIO(driver.screenshot()))
    dpr = box["dpr"]
    crop = (
        max(0, int(box["left"] * dpr) - margin),
        max(0, int(box["top"] * dpr) - margin),
        min(image.width, int(box["right"] * dpr) + margin),
        min(image.height, int(box["bottom"] * dpr) + margin),
    )
    image = image.crop(crop).convert("RGB")
    if max_width and image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.LANCZOS)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)
    print(f"screenshot of {path.name}: {out} ({image.width}x{image.height} px)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--comfyui-dir", required=True, help="ComfyUI source tree (its main.py)")
    p.add_argument("--python", default=sys.executable, help="the Python of the ComfyUI environment")
    p.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    p.add_argument("--window", default="1920x1080", help="browser window WxH (default 1920x1080)")
    p.add_argument("--workflow", action="append", help="only this workflow file name (repeatable)")
    p.add_argument("--screenshot", help="workflow file name to screenshot after the check")
    p.add_argument("--screenshot-out", type=Path, help="PNG to write the cropped screenshot to")
    p.add_argument("--screenshot-width", type=int, default=0, help="scale the screenshot down to this width (px)")
    p.add_argument("--scale-factor", type=float, default=1.0,
                   help="device pixel ratio of the browser (2 gives a sharper screenshot; default 1)")
    p.add_argument("--setting", action="append", default=[], metavar="KEY=JSON",
                   help="a frontend setting for the run, e.g. Comfy.Node.AlwaysShowAdvancedWidgets=true (repeatable)")
    p.add_argument("--verbose", action="store_true", help="print every node's rectangle")
    args = p.parse_args(argv)

    workflows = [w for w in shipped_workflows() if not args.workflow or w.name in args.workflow]
    window = tuple(int(v) for v in args.window.lower().split("x"))
    version = host_version(args.comfyui_dir)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="mdim-layout-") as tmp:
        base = Path(tmp)
        prepare_base_dir(base, shipped_workflows())
        server = start_server(args.comfyui_dir, base, args.port or _free_port(), python=args.python)
        driver_proc = driver = None
        try:
            bad = import_failures(server.log_text())
            if bad:
                raise RuntimeError("the pack failed to import:\n" + "\n".join(bad))
            settings = dict(QUIET_SETTINGS)
            for item in args.setting:
                key, _, value = item.partition("=")
                settings[key] = json.loads(value)
            set_settings(server.url, settings)
            driver_proc, driver_url = start_chromedriver(args.chromedriver)
            driver = WebDriver(driver_url, args.chromium, window, args.scale_factor)
            driver.get(server.url)
            frontend = wait_for_app(driver)
            print(f"ComfyUI {version}, frontend {frontend}, window {window[0]}x{window[1]}"
                  + "".join(f", {item}" for item in args.setting))
            for path in workflows:
                nodes = load_and_collect(driver, path)
                if isinstance(nodes, dict) and "error" in nodes:
                    print(f"{path.name}: could not load: {nodes['error']}")
                    failures += 1
                    continue
                found, closest = overlaps(nodes)
                grown = [n for n in nodes if n["min_size"] and (n["min_size"][0] > n["size"][0] + 0.5
                                                                 or n["min_size"][1] > n["size"][1] + 0.5)]
                status = "OVERLAP" if found else "ok"
                print(f"{path.name}: {len(nodes)} nodes, {status}, closest gap {closest:.0f} px"
                      + (f", {len(grown)} node(s) smaller than their content" if grown else ""))
                for a, b, ox, oy in found:
                    print(f"    {a['title']} (#{a['id']}) overlaps {b['title']} (#{b['id']}) by {ox:.0f} x {oy:.0f} px")
                if args.verbose:
                    for x0, y0, x1, y1, n in rects(nodes):
                        print(f"    #{n['id']:<3} {n['type']:<26} x {x0:6.0f}..{x1:6.0f}  y {y0:6.0f}..{y1:6.0f}  "
                              f"min {n['min_size']}")
                failures += bool(found)
            if args.screenshot:
                target = next((w for w in shipped_workflows() if w.name == args.screenshot), None)
                if target is None:
                    raise SystemExit(f"--screenshot: no shipped workflow named {args.screenshot}")
                out = args.screenshot_out or Path(f"{target.stem}_{version}.png")
                screenshot_graph(driver, target, out, max_width=args.screenshot_width)
        finally:
            if driver is not None:
                driver.quit()
            if driver_proc is not None:
                driver_proc.terminate()
                driver_proc.wait(timeout=20)
            stop_server(server)
    print(f"{len(workflows) - failures} of {len(workflows)} workflows without overlapping nodes")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
