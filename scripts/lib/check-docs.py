#!/usr/bin/env python3
"""Checks the relative links of cvmem's Markdown docs: every linked file
exists and every #anchor names a heading of the linked page (GitHub's
slugs). Prints each broken link as FILE:LINE: what, and exits 1 if any.

    scripts/lib/check-docs.py [TOP]

scripts/test runs it: the docs are split over README.md and docs/, and
code moves under them.
"""
import os
import re
import sys


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped
    (but - and _), spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def prose_lines(path):
    """(number, line) of PATH outside fenced code blocks."""
    fenced = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.startswith("```"):
                fenced = not fenced
            elif not fenced:
                yield number, line


def anchors(path):
    seen = {}
    out = set()
    for _, line in prose_lines(path):
        m = re.match(r"^#{1,6}\s+(.*)", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
    return out


def main():
    top = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    docs = os.path.join(top, "docs")
    pages = ["README.md", "guest-tests/README.md"] + sorted(
        os.path.join("docs", f) for f in os.listdir(docs) if f.endswith(".md")
    )
    links = broken = 0
    for page in pages:
        path = os.path.join(top, page)
        for number, line in prose_lines(path):
            for m in re.finditer(r"\]\(([^)\s]+)\)", line):
                target = m.group(1)
                links += 1
                if re.match(r"[a-z]+:", target):
                    continue
                file, _, fragment = target.partition("#")
                linked = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
                why = None
                if not os.path.exists(linked):
                    why = "no such file"
                elif fragment and not linked.endswith(".md"):
                    why = "an anchor on a file that is not Markdown"
                elif fragment and fragment not in anchors(linked):
                    why = "no such heading"
                if why:
                    print(f"{page}:{number}: {target}: {why}")
                    broken += 1
    print(f"check-docs: {links} links in {len(pages)} pages, {broken} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
