"""A live ComfyUI serves every node's help page where its frontend looks for it.

The frontend (1.35 with ComfyUI 0.8.0, 1.45 with 0.28.0) builds the URL of a custom node's help page
from ``/object_info``: ``python_module`` ``custom_nodes.<folder>`` (anything after ``@`` dropped) gives
``/extensions/<folder>/docs/<node_id>.md`` (first ``docs/<node_id>/<locale>.md``). It shows the answer
unless it fails or is ``text/html``. The host serves the pack's ``WEB_DIRECTORY`` under that path.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HELP_DIR = REPO / "web" / "docs"


def help_url(info: dict) -> str | None:
    """The help page URL the frontend builds for a node (``getNodeHelpBaseUrl`` + ``<name>.md``)."""
    parts = (info.get("python_module") or "").split(".")
    if len(parts) < 2 or parts[0] != "custom_nodes":
        return None
    return f"/extensions/{parts[1].split('@')[0]}/docs/{info['name']}.md"


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), b""


def test_every_mdim_node_help_page_is_served_where_the_frontend_looks(comfy_server):
    mdim = {k: v for k, v in comfy_server.object_info().items() if k.startswith("MDIM_")}
    assert mdim, "the host serves no MDIM node"
    problems = []
    for node_id, info in sorted(mdim.items()):
        url = help_url(info)
        if url is None:
            problems.append(f"{node_id}: python_module {info.get('python_module')!r} is not a custom node's")
            continue
        status, content_type, body = get(comfy_server.url + url)
        page = HELP_DIR / f"{node_id}.md"
        if status != 200:
            problems.append(f"{node_id}: GET {url} -> HTTP {status}")
        elif "text/html" in content_type:
            problems.append(f"{node_id}: GET {url} answers {content_type}, which the frontend discards")
        elif not page.is_file() or body != page.read_bytes():
            problems.append(f"{node_id}: GET {url} does not answer web/docs/{node_id}.md")
    assert not problems, "\n".join(problems)


def test_the_sgim_help_page_is_the_markdown_with_its_inputs(comfy_server):
    """The host's static route sends the file as is (``application/octet-stream`` or ``text/markdown``,
    depending on the system's MIME table); the frontend reads it as text either way."""
    info = comfy_server.object_info()["MDIM_SGIMInpaint"]
    assert info["python_module"].split(".")[0] == "custom_nodes"
    status, content_type, body = get(comfy_server.url + help_url(info))
    assert status == 200 and "html" not in content_type, (status, content_type)
    text = body.decode("utf-8")
    assert text.startswith("# MDIM SGIM Inpaint\n")
    for name in ("prefill_strength", "fri_strength", "sgi_preview"):
        assert f"`{name}`" in text


def test_a_node_without_a_page_gets_an_error_not_a_page(comfy_server):
    """What the frontend meets for a node without help (it then shows the node's description)."""
    info = dict(comfy_server.object_info()["MDIM_SGIMInpaint"], name="MDIM_NoSuchNode")
    status, content_type, _ = get(comfy_server.url + help_url(info))
    assert status == 404 or "text/html" in content_type, (status, content_type)
