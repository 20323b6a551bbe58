"""Command line of MDIM: ``python -m mdim_core <command> ...``.

Each command lives in its own module, imported only when that command runs; the
module exposes ``add_arguments(parser)`` and ``run(args) -> int`` (the exit status).
To add a command, add one line to ``COMMANDS``. A ``ValueError`` that a command does not handle
itself (bad arguments or input, named in its message) is printed to stderr as ``error: ...``
and gives exit status 2; a ``MemoryError`` (a page too large for the memory free, said before
the work starts) likewise, with exit status 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "inpaint": ("mdim_core.cli.inpaint", "Remove text/SFX under a mask and redraw it (SGIM, local diffusers model)."),
    "eval": ("mdim_core.cli.evaluate", "Score output pages against ground truth (PSNR, SSIM, seams, screentone)."),
    "synth": ("mdim_core.cli.synth", "Write generated manga pages with ground truth, masks and aged scans."),
    "restore": ("mdim_core.cli.restore", "Clean old scans: a page or a whole volume (no model needed; optional model steps)."),
    "mask": ("mdim_core.cli.mask", "Write one text mask per page (white = remove): bubbles, free text, SFX; no model needed."),
    "clean": ("mdim_core.cli.clean", "Remove the text of raw pages: auto mask, flat fill, SGIM for the rest (--model)."),
    "lama-fill": ("mdim_core.cli.lama_fill", "Fill masked areas with a LaMa model, crop by crop at its working size."),
    "train-symvae": ("mdim_core.cli.train_symvae", "Train Symmetric VAE adapters on clean pages (for restore --adapters and the nodes)."),
    "train": ("mdim_core.cli.train", "Fine-tune an SD1.x model into an MDIM checkpoint (zero-SNR, v-prediction, full-image masks)."),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m mdim_core",
        description="MDIM: manga inpainting and restoration from the command line.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    module = None
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # import only the module of the command that runs
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser)
    args = parser.parse_args(argv)
    if module is None:
        parser.print_help()
        return 2
    try:
        return int(module.run(args) or 0)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:
        print(f"error: {exc or 'out of memory'}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
