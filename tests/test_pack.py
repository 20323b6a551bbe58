"""Packaging promises: import-light entry point, registry metadata, runtime requirements without torch."""

import ast
import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_entry_point_imports_nothing_heavy():
    """ComfyUI imports __init__.py at start-up: it must not pull torch, comfy or our nodes in."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('mdim_pack', {str(ROOT / '__init__.py')!r},"
        f" submodule_search_locations=[{str(ROOT)!r}])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['mdim_pack'] = m; spec.loader.exec_module(m)\n"
        "assert callable(m.comfy_entrypoint)\n"
        "assert not hasattr(m, 'NODE_CLASS_MAPPINGS'), 'V1 mappings would hide the V3 nodes'\n"
        "heavy = [k for k in ('torch', 'comfy', 'comfy_api', 'diffusers', 'mdim_pack.nodes') if k in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_pyproject_registry_metadata():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = meta["project"]
    assert "comfyui" not in project["name"].lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["description"] and project["license"]
    assert project["urls"]["Repository"].startswith("https://")
    comfy = meta["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    import mdim_core

    assert mdim_core.__version__ == project["version"]


def _names(requirements: str) -> list[str]:
    lines = [ln.split("#")[0].strip() for ln in requirements.splitlines()]
    return [re.split(r"[<>=!~\[; ]", ln)[0].lower() for ln in lines if ln]


def test_runtime_requirements_never_pin_torch_and_match_pyproject():
    runtime = _names((ROOT / "requirements.txt").read_text())
    assert not {"torch", "torchvision", "torchaudio"} & set(runtime)
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert sorted(runtime) == sorted(_names("\n".join(meta["project"]["dependencies"])))
    test_needs = _names((ROOT / "requirements-test.txt").read_text())
    assert "pytest" in test_needs and not set(test_needs) & set(runtime)


def _module_level(path: Path) -> dict[str, ast.AST]:
    """Top-level assignments and classes of a module (read without importing comfy)."""
    out: dict[str, ast.AST] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ClassDef):
            out[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = node.value
    return out


def test_every_listed_node_module_exists_and_exports_its_node_classes():
    listed = ast.literal_eval(_module_level(ROOT / "nodes" / "__init__.py")["NODE_MODULES"])
    assert listed, "nodes/__init__.py lists no node module"
    for name in listed:
        top = _module_level(ROOT / "nodes" / f"{name}.py")
        exported = top.get("NODES")
        assert isinstance(exported, ast.List) and exported.elts, f"nodes/{name}.py does not export NODES"
        for item in exported.elts:  # each entry is a class of the module itself
            assert isinstance(item, ast.Name) and isinstance(top.get(item.id), ast.ClassDef), (name, ast.dump(item))


def test_core_never_imports_comfy():
    for path in (ROOT / "mdim_core").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+comfy", text, re.M), f"{path} imports comfy"


def test_cli_lists_every_command_and_each_module_has_the_interface():
    import argparse

    from mdim_core.__main__ import COMMANDS

    out = subprocess.run([sys.executable, "-m", "mdim_core", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0
    for name, (module_name, _help) in COMMANDS.items():
        assert name in out.stdout
        module = importlib.import_module(module_name)
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)  # every command's options build, with their help texts
        assert callable(module.run), f"{module_name} lacks run(args)"
        assert parser.format_help()
