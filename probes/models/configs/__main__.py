"""``python -m probes.models.configs --table [--write docs/models.md] [FAMILY ...]``: the size and
memory table from the meta-device instances of every configuration record (see ``table.py``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from probes.models.configs import table as t

    ap = argparse.ArgumentParser(prog="python -m probes.models.configs", description=__doc__)
    ap.add_argument("--table", action="store_true", help="print the size and memory table (markdown)")
    ap.add_argument("--write", metavar="DOC", help="also replace the generated block of DOC (docs/models.md)")
    ap.add_argument("families", nargs="*", help=f"default: every record ({', '.join(t.families())})")
    args = ap.parse_args(argv)
    if not args.table:
        ap.print_help()
        return 2
    unknown = [f for f in args.families if f not in t.families()]
    if unknown:
        print(f"unknown families {unknown}; records: {', '.join(t.families())}", file=sys.stderr)
        return 2
    text = t.table(args.families or None)
    print(text, end="")
    if args.write:
        if args.families:
            print("--write takes the table of every record: drop the family names", file=sys.stderr)
            return 2
        changed = t.write(args.write, text)
        print(f"{args.write}: {'updated' if changed else 'unchanged'}", file=sys.stderr)
    bad = "OFF" in text
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
