"""The nodes' declarations match the schema recorded from live hosts, and the engine's defaults.

``tests/data/mdim_object_info_<version>.json`` is what ComfyUI answers on ``/object_info`` for this pack
(recorded with ``tests/integration/record_schema.py``); shipped workflows are validated against it. When a
node's inputs, types, defaults, ranges, options or tooltips change in code, these tests fail until the
schema is re-recorded on every supported host, so workflows are never checked against a stale schema.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from node_schema_stub import OPTION_KEYS, declared_object_info, load_declared_nodes
from workflow_validation import core_schema_path, mdim_schema_path

from mdim_core.inpaint.config import SGIMConfig

HOSTS = ("0.8.0", "0.28.0")


@pytest.fixture(scope="module")
def declared() -> dict:
    core = json.loads(core_schema_path("0.8.0").read_text())
    return declared_object_info(load_declared_nodes(core))


def _recorded(version: str) -> dict:
    return json.loads(mdim_schema_path(version).read_text())


def _options(spec: list) -> dict:
    opts = dict(spec[1]) if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(spec[0], list):  # older combo layout: [options, {...}]
        opts["options"] = list(spec[0])
    return {k: v for k, v in opts.items() if k in OPTION_KEYS or k == "display"}


def _type(spec: list) -> str:
    return "COMBO" if isinstance(spec[0], list) else spec[0]


@pytest.mark.parametrize("version", HOSTS)
def test_every_declared_node_is_recorded_and_nothing_else(declared, version):
    assert sorted(_recorded(version)) == sorted(declared)


@pytest.mark.parametrize("version", HOSTS)
def test_inputs_types_defaults_and_tooltips_match_the_recorded_schema(declared, version):
    recorded = _recorded(version)
    problems = []
    for node_id, mine in declared.items():
        rec = recorded.get(node_id)
        if rec is None:
            continue
        for key in ("display_name", "category", "description", "output", "output_name", "output_tooltips"):
            if rec.get(key) != mine[key]:
                problems.append(f"{node_id}.{key}: recorded {rec.get(key)!r}, declared {mine[key]!r}")
        for section in ("required", "optional"):
            if rec["input_order"].get(section, []) != mine["input_order"][section]:
                problems.append(f"{node_id} {section} inputs: recorded {rec['input_order'].get(section, [])}, "
                                f"declared {mine['input_order'][section]}")
            for name, spec in mine["input"][section].items():
                got = (rec["input"].get(section) or {}).get(name)
                if got is None:
                    continue
                if _type(got) != spec[0]:
                    problems.append(f"{node_id}.{name}: recorded type {_type(got)}, declared {spec[0]}")
                want, have = spec[1], _options(got)
                if spec[0] == "COMBO" and not want.get("options"):
                    want = {k: v for k, v in want.items() if k != "options"}  # a file list: empty here
                    have = {k: v for k, v in have.items() if k != "options"}
                for key in sorted(set(want) | set(have)):
                    if want.get(key) != have.get(key):
                        problems.append(f"{node_id}.{name}.{key}: recorded {have.get(key)!r}, declared {want.get(key)!r}")
    assert not problems, (
        "the nodes' declarations differ from the schema recorded on ComfyUI " + version + " (re-record it with "
        "tests/integration/record_schema.py on every supported host):\n" + "\n".join(problems)
    )


@pytest.mark.parametrize("version", HOSTS)
def test_sgim_widget_defaults_are_the_engines_defaults(version):
    node = _recorded(version)["MDIM_SGIMInpaint"]
    defaults = {f.name: f.default for f in dataclasses.fields(SGIMConfig)}
    widgets = {**node["input"]["required"], **(node["input"].get("optional") or {})}
    shared = sorted(set(widgets) & set(defaults))
    assert {"steps", "fri_steps", "fri_strength", "sgi_max_side", "plan", "run_fri", "context_margin",
            "min_crop_side", "prefill_strength"} <= set(shared)
    assert {n: _options(widgets[n]).get("default") for n in shared} == {n: defaults[n] for n in shared}


def test_every_input_and_output_has_a_tooltip(declared):
    missing = [f"{node_id}.{name}" for node_id, node in declared.items() for section in ("required", "optional")
               for name, spec in node["input"][section].items() if not spec[1].get("tooltip")]
    missing += [f"{node_id} output {i}" for node_id, node in declared.items()
                for i, tip in enumerate(node["output_tooltips"]) if not tip]
    assert not missing
