"""Set-up-and-run helper for a fresh machine (standard library only).

    python3 dev.py demo    # removes the text of the bundled raw page (samples/raw_page.png -> out/raw_page.png)
                           # and cleans the bundled old scan (samples/old_scan.png -> out/old_scan.png)
    python3 dev.py test    # ruff + the test suite (what CI runs)

On first use it creates ``.venv`` with torch and torchvision (``MDIM_TORCH_SPEC``, default
``torch==2.14.1 torchvision==0.29.1``, a pair built for each other; set it to the build that fits your GPU),
the requirements and the test needs. Later runs reuse it; ``MDIM_VENV`` picks another folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("MDIM_VENV", ROOT / ".venv"))
TORCH_SPEC = os.environ.get("MDIM_TORCH_SPEC", "torch==2.14.1 torchvision==0.29.1")
REQUIREMENTS = ("requirements.txt", "requirements-test.txt")


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(*cmd: str | os.PathLike) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True)


def ensure_env() -> Path:
    py = venv_python()
    stamp = VENV / ".mdim-installed"
    wanted = "\n".join([TORCH_SPEC] + [(ROOT / r).read_text() for r in REQUIREMENTS])
    if stamp.exists() and stamp.read_text() == wanted:
        return py
    if not py.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    run(py, "-m", "pip", "install", "-q", "--upgrade", "pip")
    if subprocess.run([str(py), "-c", "import torch, torchvision"], capture_output=True).returncode != 0:
        run(py, "-m", "pip", "install", "-q", *TORCH_SPEC.split())
    run(py, "-m", "pip", "install", "-q", *[a for r in REQUIREMENTS for a in ("-r", r)])
    stamp.write_text(wanted)
    return py


def main(argv: list[str]) -> int:
    commands = {"demo", "test"}
    if len(argv) != 1 or argv[0] not in commands:
        print(__doc__)
        return 2
    py = ensure_env()
    try:
        if argv[0] == "demo":
            run(py, "-m", "mdim_core", "clean", "samples/raw_page.png", "-o", "out/", "--save-masks")
            run(py, "-m", "mdim_core", "restore", "samples/old_scan.png", "-o", "out/")
        else:
            run(py, "-m", "ruff", "check", ".")
            run(py, "-m", "pytest", "-q")
    except subprocess.CalledProcessError as exc:
        return exc.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
