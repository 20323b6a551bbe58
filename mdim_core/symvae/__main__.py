"""``python -m mdim_core.symvae train|restore ...`` (Symmetric VAE training and restoration)."""

from __future__ import annotations

import argparse
import sys

from . import restore, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mdim_core.symvae", description="Symmetric VAE tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = {
        "train": (train, "train adapters on clean pages (aged inputs, thesis-prepared targets)"),
        "restore": (restore, "old scans -> clean pages with trained adapters"),
    }
    for name, (module, help_text) in commands.items():
        module.add_arguments(sub.add_parser(name, help=help_text, description=module.__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(commands[args.command][0].run(args) or 0)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
