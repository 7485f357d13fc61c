"""Command line for datasets: ``python -m cnnlab.data list | check NAME | fetch NAME``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cnnlab import data
from cnnlab.core.errors import CnnlabError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cnnlab.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the known datasets")
    check = sub.add_parser("check", help="exit 0 if a verified local copy exists, else 1")
    fetch = sub.add_parser("fetch", help="find or download a dataset; print where it is")
    for command in (check, fetch):
        command.add_argument("name", help="dataset name (see `list`)")
        command.add_argument(
            "--cache-dir", help="cache root (default: $CNNLAB_DATA or ~/.cache/cnnlab)"
        )
        command.add_argument(
            "--system-dir",
            action="append",
            dest="system_dirs",
            help="root searched as <root>/<name>/ (repeatable; default /usr/share/datasets, "
            "/usr/local/share/datasets)",
        )
        command.add_argument("--no-system-dirs", action="store_true", help="search the cache only")
    fetch.add_argument(
        "--mirror", help="base URL to download from (default: $CNNLAB_MIRROR or official)"
    )
    return parser


def _list() -> int:
    for name in data.list_datasets():
        info = data.describe(name)
        print(f"{name:<14} {info['title']}  [{info['source']}]")
    return 0


def _check(args: argparse.Namespace, system_dirs: Sequence[str] | None) -> int:
    if args.name == "digits":
        print("digits: bundled with scikit-learn")
        return 0
    try:
        found = data.find_local(args.name, cache_dir=args.cache_dir, system_dirs=system_dirs)
    except CnnlabError as error:
        print(f"{args.name}: {error}", file=sys.stderr)
        return 1
    if found is None:
        print(f"{args.name}: no verified local copy", file=sys.stderr)
        return 1
    for folder in sorted({str(p.parent) for p in found.values()}):
        print(folder)
    return 0


def _fetch(args: argparse.Namespace, system_dirs: Sequence[str] | None) -> int:
    if args.name == "digits":
        print("digits: bundled with scikit-learn, nothing to fetch")
        return 0
    try:
        found = data.fetch(
            args.name, cache_dir=args.cache_dir, system_dirs=system_dirs, mirror=args.mirror
        )
    except CnnlabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for folder in sorted({str(p.parent) for p in found.values()}):
        print(folder)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "list":
        return _list()
    system_dirs: Sequence[str] | None = () if args.no_system_dirs else args.system_dirs
    if args.command == "check":
        return _check(args, system_dirs)
    return _fetch(args, system_dirs)


if __name__ == "__main__":
    sys.exit(main())
