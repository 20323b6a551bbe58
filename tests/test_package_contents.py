"""The registry archive holds what users run and leaves out what only developers use.

``comfy node pack`` (comfy-cli) zips the git-tracked files that no pattern of ``.comfyignore`` matches
(gitignore rules). Every pattern here is kept to an anchored path (``/tests/``, ``/dev.py``), for which
gitignore matching is plain prefix matching, so this test applies them faithfully without comfy-cli.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: what a user of the nodes runs or reads, at the top of the archive
RUNTIME = ("__init__.py", "nodes/", "mdim_core/", "web/", "workflows/", "README.md", "LICENSE",
           "pyproject.toml", "requirements.txt")
DEVELOPMENT = ("tests/", "benchmarks/", "tools/", "samples/", "docs/", ".ci/", "dev.py", "requirements-test.txt")
ANCHORED = re.compile(r"/[\w.\-]+(/[\w.\-]+)*/?")


def ignore_patterns() -> list[str]:
    lines = (REPO / ".comfyignore").read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """gitignore matching of ``path`` for anchored patterns: ``/dir/`` covers the folder, ``/file`` the file."""
    for pattern in patterns:
        target = pattern.lstrip("/")
        if pattern.endswith("/") and path.startswith(target):
            return True
        if not pattern.endswith("/") and path == target:
            return True
    return False


def tracked_files() -> list[str]:
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the archive is made from git-tracked files")
    out = subprocess.run([git, "-C", str(REPO), "ls-files"], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"git ls-files failed: {out.stderr.strip()}")
    return [line for line in out.stdout.splitlines() if line]


def test_patterns_are_anchored_paths_so_prefix_matching_is_faithful():
    patterns = ignore_patterns()
    assert patterns
    assert [p for p in patterns if not ANCHORED.fullmatch(p)] == [], "use anchored paths (/name or /folder/)"


def test_the_archive_holds_what_users_run_and_nothing_of_development():
    patterns = ignore_patterns()
    files = tracked_files()
    packed = [f for f in files if not ignored(f, patterns)]
    for entry in RUNTIME:
        assert any(f == entry or (entry.endswith("/") and f.startswith(entry)) for f in packed), f"{entry} is not packed"
        assert not ignored(entry, patterns)
    for entry in DEVELOPMENT:
        assert not [f for f in packed if f == entry or f.startswith(entry)], f"{entry} would be packed"
    top = {f.split("/")[0] + ("/" if "/" in f else "") for f in packed}
    assert top <= set(RUNTIME), f"unexpected in the archive: {sorted(top - set(RUNTIME))}"


def test_every_help_page_and_workflow_is_packed():
    patterns = ignore_patterns()
    for path in [*(REPO / "web" / "docs").glob("*.md"), *(REPO / "workflows").glob("*.json")]:
        assert not ignored(path.relative_to(REPO).as_posix(), patterns), path


def test_the_matcher_follows_gitignore_for_anchored_patterns():
    patterns = ["/tests/", "/dev.py"]
    assert ignored("tests/test_x.py", patterns) and ignored("tests/data/a.json", patterns)
    assert ignored("dev.py", patterns)
    assert not ignored("mdim_core/tests.py", patterns) and not ignored("nodes/dev.py", patterns)
    assert not ignored("dev.pyc", patterns) and not ignored("testsuite/x.py", patterns)
