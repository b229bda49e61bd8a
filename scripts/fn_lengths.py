#!/usr/bin/env python3
"""The longest functions of each crate, in lines from `fn` to its closing brace.

Usage: python3 scripts/fn_lengths.py [ROOT] [--top N]

Comments, strings and char literals are blanked out first, so that braces
inside them do not count.
"""

import argparse
import pathlib
import re

FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")
CRATES = {
    "testkit": "crates/testkit",
    "lameduck": "crates/lameduck",
    "lameduck-cli": "crates/lameduck-cli",
    "loadgen": "crates/loadgen",
    "lameduck-bench": "benches",
    "e2e": "e2e",
}


def blank(text: str) -> str:
    """The same text with every character but newlines replaced by spaces."""
    return re.sub(r"[^\n]", " ", text)


def strip(src: str) -> str:
    """Source with comments, strings and char literals blanked, lines kept."""
    out, i, n = [], 0, len(src)
    while i < n:
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
        elif src.startswith("/*", i):
            j = src.find("*/", i) + 2
        elif (m := re.match(r'b?r(#*)"', src[i : i + 10])) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            end = '"' + m.group(1)
            j = src.find(end, i + m.end()) + len(end)
        elif src[i] == '"':
            j = i + 1
            while src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            j += 1
        elif m := re.match(r"'(\\.|[^\\'])'", src[i : i + 4]):
            j = i + m.end()
        else:
            out.append(src[i])
            i += 1
            continue
        out.append(blank(src[i:j]))
        i = j
    return "".join(out)


def functions(path: pathlib.Path):
    """(name, first line, length in lines) of every fn with a body."""
    lines = strip(path.read_text()).split("\n")
    for first, line in enumerate(lines):
        m = FN.match(line)
        if not m:
            continue
        depth, opened = 0, False
        for last in range(first, len(lines)):
            for ch in lines[last]:
                if ch == "{":
                    depth, opened = depth + 1, True
                elif ch == "}":
                    depth -= 1
                elif ch == ";" and not opened:
                    break  # a declaration without a body
            else:
                if opened and depth == 0:
                    yield m.group(6), first + 1, last - first + 1
                    break
                continue
            break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default=".", type=pathlib.Path)
    parser.add_argument("--top", type=int, default=3)
    args = parser.parse_args()
    for name, directory in CRATES.items():
        found = [
            (length, f"{path.relative_to(args.root)}:{line}", fn)
            for path in sorted((args.root / directory).rglob("*.rs"))
            if "target" not in path.parts
            for fn, line, length in functions(path)
        ]
        found.sort(reverse=True)
        print(f"{name:15} " + "; ".join(f"{fn} {n} lines ({loc})" for n, loc, fn in found[: args.top]))


if __name__ == "__main__":
    main()
