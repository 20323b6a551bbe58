"""Record this pack's node schema as a live ComfyUI reports it: tests/data/mdim_object_info_<version>.json.

CI validates shipped workflows against this file (tests/test_workflows.py) without running a host;
the integration suite fails when the file differs from what the live host answers. Regenerate it
after changing a node's schema, with the Python of a ComfyUI environment:

    python tests/integration/record_schema.py --comfyui-dir $COMFYUI_DIR   # once per supported ComfyUI
    python tests/integration/record_schema.py --url http://127.0.0.1:8188 --version 0.28.0   # a running server

Only ``MDIM_*`` nodes are kept. File names (model files, input images) are removed from combo
options, so the file does not depend on what is installed where it was recorded.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from comfy_harness import PACK_DIR_NAME, REPO_ROOT, import_failures, start_server, stop_server  # noqa: E402
from workflow_validation import FILE_EXTENSIONS, host_version, mdim_schema_path, spec_type  # noqa: E402

REGENERATE_COMMAND = "python tests/integration/record_schema.py --comfyui-dir $COMFYUI_DIR  (on every supported host)"


def normalize_schema(object_info: dict) -> dict:
    """The ``MDIM_*`` part of an object_info answer, without file names in combo options."""
    result = {}
    for node_id in sorted(object_info):
        if not node_id.startswith("MDIM_"):
            continue
        node = copy.deepcopy(object_info[node_id])
        for section in ("required", "optional"):
            for spec in (node.get("input", {}).get(section) or {}).values():
                if spec_type(spec) != "COMBO":
                    continue
                if isinstance(spec[0], list):
                    spec[0] = _without_files(spec[0])
                elif len(spec) > 1 and isinstance(spec[1], dict) and "options" in spec[1]:
                    spec[1]["options"] = _without_files(spec[1]["options"])
        result[node_id] = node
    return result


def _without_files(options: list) -> list:
    return [v for v in options if not (isinstance(v, str) and FILE_EXTENSIONS.search(v))]


def dumps(schema: dict) -> str:
    return json.dumps(schema, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def fetch_object_info(url: str) -> dict:
    with urllib.request.urlopen(url.rstrip("/") + "/object_info", timeout=120) as resp:
        return json.loads(resp.read())


def record_from_new_server(comfyui_dir: str, port: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="mdim_schema_") as base:
        (Path(base) / "custom_nodes").mkdir()
        (Path(base) / "custom_nodes" / PACK_DIR_NAME).symlink_to(REPO_ROOT, target_is_directory=True)
        server = start_server(comfyui_dir, base, port, python=sys.executable)
        try:
            failures = import_failures(server.log_text())
            if failures:
                raise RuntimeError("the pack failed to import:\n" + server.log_tail())
            return server.object_info()
        finally:
            stop_server(server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Record tests/data/mdim_object_info_<version>.json from a live ComfyUI."
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--comfyui-dir", help="ComfyUI source tree: start a server with the pack for the recording"
    )
    source.add_argument("--url", help="base URL of a running ComfyUI that has the pack loaded")
    parser.add_argument(
        "--port", type=int, default=18189, help="port for the server started with --comfyui-dir"
    )
    parser.add_argument("--version", help="the host's ComfyUI version (read from --comfyui-dir when given)")
    parser.add_argument("--out", help="output file (default: tests/data/mdim_object_info_<version>.json)")
    args = parser.parse_args(argv)
    version = args.version or (host_version(args.comfyui_dir) if args.comfyui_dir else None)
    if not (args.out or version):
        parser.error("--version is needed with --url (or give --out)")
    out = args.out or str(mdim_schema_path(version))

    info = fetch_object_info(args.url) if args.url else record_from_new_server(args.comfyui_dir, args.port)
    schema = normalize_schema(info)
    if not schema:
        print("no MDIM_* node in the host's /object_info: is the pack loaded?", file=sys.stderr)
        return 1
    Path(out).write_text(dumps(schema), encoding="utf-8")
    print(f"wrote {len(schema)} nodes to {out}: {', '.join(schema)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
