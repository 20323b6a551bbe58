"""Every node has a help page (``web/docs/<node_id>.md``) that is true to the node's declared schema.

ComfyUI's frontend shows ``WEB_DIRECTORY/docs/<node_id>.md`` in the node library and the help panel. A page
follows one convention, which these tests parse:

- its first line is ``# <display name>``;
- an ``## Inputs`` section holds a table whose first column is each input's name in backticks, whose
  second column starts with the input's type as ComfyUI names it (``INT``, ``COMBO``, ``MODEL``, ...;
  a range ``min..max`` after it must equal the declared one) and whose third column is the default in
  backticks, or ``—`` for sockets without one;
- an ``## Outputs`` table in the same form (name, type) for the outputs.

The declarations are read without ComfyUI (``tests/node_schema_stub.py``), so a renamed, added or removed
input, or a changed default, fails here until the page follows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from node_schema_stub import declared_object_info, load_declared_nodes
from workflow_validation import core_schema_path

REPO = Path(__file__).resolve().parents[1]
HELP_DIR = REPO / "web" / "docs"
RANGE = re.compile(r"(-?\d+(?:\.\d+)?)\s*\.\.\s*(-?\d+(?:\.\d+)?)")


@pytest.fixture(scope="module")
def declared() -> dict:
    core = json.loads(core_schema_path("0.8.0").read_text())
    return declared_object_info(load_declared_nodes(core))


def section_rows(text: str, heading: str) -> list[list[str]]:
    """The cells of the table under ``## heading`` (header and separator rows dropped)."""
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    if match is None:
        return []
    rows = []
    for line in match.group(1).splitlines():
        line = line.strip()
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if set("".join(cells)) <= set("-: "):
            continue  # the |---| separator
        rows.append(cells)
    return rows[1:]  # the first row is the header


def named_rows(rows: list[list[str]]) -> dict[str, list[str]]:
    out = {}
    for cells in rows:
        match = re.fullmatch(r"`([^`]+)`", cells[0])
        if match:
            out[match.group(1)] = cells
    return out


def stated_default(cell: str) -> str | None:
    match = re.fullmatch(r"`([^`]*)`", cell.strip())
    return match.group(1) if match else None


def same_value(stated: str, declared) -> bool:
    if isinstance(declared, bool):
        return stated.lower() == str(declared).lower()
    if isinstance(declared, (int, float)):
        try:
            return float(stated) == float(declared)
        except ValueError:
            return False
    return stated == str(declared)


def _pages() -> list[Path]:
    return sorted(HELP_DIR.glob("*.md"))


def test_every_registered_node_has_a_help_page_and_every_page_a_node(declared):
    pages = {p.stem for p in _pages()}
    assert sorted(set(declared) - pages) == [], "nodes without web/docs/<node_id>.md"
    assert sorted(pages - set(declared)) == [], "help pages of nodes that are not registered"


def test_the_entry_point_serves_the_help_folder():
    """ComfyUI serves ``WEB_DIRECTORY`` of the pack's __init__.py under /extensions/<pack folder>/."""
    text = (REPO / "__init__.py").read_text()
    match = re.search(r'^WEB_DIRECTORY\s*=\s*"([^"]+)"', text, re.M)
    assert match, "__init__.py defines no WEB_DIRECTORY"
    assert (REPO / match.group(1)).resolve() == HELP_DIR.parent


@pytest.mark.parametrize("node_id", sorted(p.stem for p in _pages()))
def test_help_page_is_true_to_the_schema(declared, node_id):
    info = declared.get(node_id)
    if info is None:
        pytest.skip(f"{node_id} is not registered (reported by the test above)")
    text = (HELP_DIR / f"{node_id}.md").read_text(encoding="utf-8")
    problems = []
    first = text.splitlines()[0] if text else ""
    if first != f"# {info['display_name']}":
        problems.append(f"first line {first!r}, expected '# {info['display_name']}'")

    specs = {**info["input"]["required"], **info["input"]["optional"]}
    rows = named_rows(section_rows(text, "Inputs"))
    for name in sorted(set(specs) - set(rows)):
        problems.append(f"input {name!r} is not in the Inputs table")
    for name in sorted(set(rows) - set(specs)):
        problems.append(f"the Inputs table names {name!r}, which the node does not have")
    for name, cells in rows.items():
        if name not in specs or len(cells) < 3:
            if name in specs:
                problems.append(f"input {name!r}: expected the columns name, type, default")
            continue
        io_type, options = specs[name]
        type_cell, default_cell = cells[1], cells[2]
        if type_cell.split()[0].rstrip(",") != io_type:
            problems.append(f"input {name!r}: type column {type_cell!r} does not start with {io_type}")
        found = RANGE.search(type_cell)
        if found and (float(found.group(1)) != options.get("min") or float(found.group(2)) != options.get("max")):
            problems.append(f"input {name!r}: range {found.group(0)} in the page, declared "
                            f"{options.get('min')}..{options.get('max')}")
        stated = stated_default(default_cell)
        if "default" in options:
            if stated is None:
                problems.append(f"input {name!r}: the default ({options['default']!r}) is not stated")
            elif not same_value(stated, options["default"]):
                problems.append(f"input {name!r}: the page says default {stated!r}, declared {options['default']!r}")
        elif stated is not None:
            problems.append(f"input {name!r}: the page states default {stated!r}, the node declares none")

    outputs = dict(zip(info["output_name"], info["output"]))
    out_rows = named_rows(section_rows(text, "Outputs"))
    for name in sorted(set(outputs) - set(out_rows)):
        problems.append(f"output {name!r} is not in the Outputs table")
    for name in sorted(set(out_rows) - set(outputs)):
        problems.append(f"the Outputs table names {name!r}, which the node does not have")
    for name, cells in out_rows.items():
        if name in outputs and (len(cells) < 2 or cells[1].split()[0] != outputs[name]):
            problems.append(f"output {name!r}: type column should start with {outputs[name]}")
    assert not problems, f"web/docs/{node_id}.md:\n  " + "\n  ".join(problems)


def test_the_parser_finds_what_the_convention_promises():
    """The checks above cannot pass vacuously: a missing, extra or wrong row is seen."""
    page = (
        "# X\n\n## Inputs\n\n| input | type | default | what |\n|---|---|---|---|\n"
        "| `steps` | INT 1..1000 | `30` | s |\n| `model` | MODEL | — | m |\n\n"
        "## Outputs\n\n| output | type | what |\n|---|---|---|\n| `SIGMAS` | SIGMAS | s |\n\n## Tips\n\n| `no` | table |\n"
    )
    inputs = named_rows(section_rows(page, "Inputs"))
    assert sorted(inputs) == ["model", "steps"]
    assert stated_default(inputs["steps"][2]) == "30" and stated_default(inputs["model"][2]) is None
    assert RANGE.search(inputs["steps"][1]).groups() == ("1", "1000")
    assert sorted(named_rows(section_rows(page, "Outputs"))) == ["SIGMAS"]
    assert same_value("true", True) and not same_value("false", True)
    assert same_value("0.70", 0.7) and not same_value("0.5", 0.7) and same_value("halve", "halve")
