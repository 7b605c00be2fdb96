"""The `scs-sweep` console script: parses arguments and hands each command to its module.

Commands that need Ray, pandas or DuckDB import them when they run, so `models` and `bench` work on a
machine that has only torch. Any expected failure ends as one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import sys

from trainables.config import ConfigError
from trainables.data import DataError


class UsageError(RuntimeError):
    """Bad input from the user: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    from trainables import bench

    p = argparse.ArgumentParser(prog="scs-sweep", description="Sharpened Cosine Similarity sweeps.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("models", help="every arch x variant with parameter counts")
    m.add_argument("--json", action="store_true")
    m.set_defaults(handler="orchestrator.models_cmd:run")

    b = sub.add_parser("bench", help="training-core speed: epoch times, SCS vs conv (no Ray needed)")
    bench.add_arguments(b)
    b.set_defaults(handler="trainables.bench:run")
    return p


def _call(handler: str, args) -> int:
    import importlib

    module, func = handler.split(":")
    return getattr(importlib.import_module(module), func)(args)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _call(args.handler, args)
    except (UsageError, ConfigError, DataError, FileNotFoundError) as exc:
        print(f"scs-sweep {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scs-sweep {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
