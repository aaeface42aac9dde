#!/usr/bin/env python3
"""Builds the book (mdBook, book.toml at the top: docs/ as its source)
into a temporary directory and checks every link of every HTML page in
it, offline:

- a relative link (href or src) must name a file of the book, and its
  #fragment an id in that page;
- a link into the repository (book.toml's output.html.git-repository-url,
  /blob/main/PATH, made by lib/book-links.py from the pages' links to
  the source tree) must name a file of this checkout, and its #fragment
  a heading of that file when it is Markdown (check-docs.py's slugs);
- other URLs are not fetched;
- every page of docs/ is a chapter of docs/SUMMARY.md.

Prints each broken link as PAGE: LINK: why, and exits 1 if there is
any, or if mdbook fails or warns (an unknown chapter, a missing file).

    scripts/lib/check-book.py [--keep DIR]   DIR: build there and keep it

scripts/test runs it.
"""

import argparse
import html.parser
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import urllib.parse

TOP = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

_spec = importlib.util.spec_from_file_location(
    "check_docs", os.path.join(os.path.dirname(os.path.abspath(__file__)), "check-docs.py"))
check_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_docs)


# HTML's elements (the WHATWG list) and SVG's that mdBook uses: a page's
# `<HLT>` outside code is read as a tag of that name, and its text is lost.
ELEMENTS = set("""
a abbr address area article aside audio b base bdi bdo blockquote body br button canvas
caption cite code col colgroup data datalist dd del details dfn dialog div dl dt em embed
fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 head header hgroup hr html i
iframe img input ins kbd label legend li link main map mark menu meta meter nav noscript
object ol optgroup option output p picture pre progress q rp rt ruby s samp script search
section select slot small source span strong style sub summary sup table tbody td template
textarea tfoot th thead time title tr track u ul var video wbr
svg path g use defs symbol circle rect line polyline polygon
""".split())


class Page(html.parser.HTMLParser):
    """The ids, the links (href, src) and the unknown elements of one HTML
    page (custom elements, with a '-' in their name, are known)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.links, self.unknown, self.base = set(), [], set(), None

    def handle_starttag(self, tag, attrs):
        if tag not in ELEMENTS and "-" not in tag:
            self.unknown.add(tag)
        if tag == "base":
            self.base = dict(attrs).get("href")
        for name, value in attrs:
            if value and (name == "id" or (tag == "a" and name == "name")):
                self.ids.add(value)
            if value and name in ("href", "src"):
                self.links.append(value)


def parse(path, cache={}):
    if path not in cache:
        p = Page()
        with open(path, encoding="utf-8") as f:
            p.feed(f.read())
        cache[path] = p
    return cache[path]


def check(out, repo):
    """The broken links of the book in `out`: (page, link, why)."""
    broken, links = [], 0
    repo_prefix = repo.rstrip("/") + "/blob/main/"
    pages = sorted(os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs if f.endswith(".html"))
    for page in pages:
        for tag in sorted(parse(page).unknown):
            broken.append((os.path.relpath(page, out), f"<{tag}>",
                           "not an HTML element: text in the page read as a tag (quote it in `code`)"))
        # 404.html's <base href="/">: its links are from the book's root.
        base = out if parse(page).base == "/" else os.path.dirname(page)
        for link in parse(page).links:
            links += 1
            why = None
            if link.startswith(repo_prefix):
                path, _, fragment = link[len(repo_prefix):].partition("#")
                file = os.path.join(TOP, urllib.parse.unquote(path))
                if not os.path.exists(file):
                    why = "no such file in the checkout"
                elif fragment and file.endswith(".md") and fragment not in check_docs.anchors(file):
                    why = "no such heading in the checkout's file"
            elif re.match(r"[a-z][a-z0-9+.-]*:", link) or link.startswith("//"):
                continue
            else:
                url = urllib.parse.urlsplit(link)
                target = page
                if url.path:
                    path = urllib.parse.unquote(url.path)
                    # mdBook's site-url is "/": the book's root.
                    target = os.path.normpath(os.path.join(out if path.startswith("/") else base,
                                                           path.lstrip("/")))
                    if os.path.isdir(target):
                        target = os.path.join(target, "index.html")
                fragment = urllib.parse.unquote(url.fragment)
                if not target.startswith(out + os.sep):
                    why = "leaves the book"
                elif not os.path.isfile(target):
                    why = "no such file in the book"
                elif fragment and target.endswith(".html") and fragment not in parse(target).ids:
                    why = "no such id in the page"
            if why:
                broken.append((os.path.relpath(page, out), link, why))
    return pages, links, broken


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", help="build into this directory and keep it")
    a = ap.parse_args()
    if shutil.which("mdbook") is None:
        print("check-book: no mdbook on the PATH: run scripts/setup (it installs mdBook)")
        return 1
    with open(os.path.join(TOP, "book.toml"), "rb") as f:
        repo = tomllib.load(f)["output"]["html"]["git-repository-url"]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.abspath(a.keep) if a.keep else os.path.join(tmp, "book")
        r = subprocess.run(["mdbook", "build", "--dest-dir", out, TOP],
                           capture_output=True, text=True)
        sys.stderr.write(r.stderr)
        if r.returncode != 0:
            print(f"check-book: mdbook build failed ({r.returncode})")
            return 1
        warnings = [l for l in r.stderr.splitlines() if re.search(r"\b(WARN|ERROR)\b", l)]
        pages, links, broken = check(out, repo)
        # Every page of docs/ is a chapter: one left out of SUMMARY.md
        # would be missing from the book without a word from mdbook.
        docs = os.path.join(TOP, "docs")
        with open(os.path.join(docs, "SUMMARY.md"), encoding="utf-8") as f:
            listed = set(re.findall(r"\]\(([^)#]+\.md)\)", f.read()))
        for page in sorted(os.listdir(docs)):
            if page.endswith(".md") and page != "SUMMARY.md" and page not in listed:
                broken.append(("SUMMARY.md", page, "a page of docs/ that is not in the book"))
        for page, link, why in broken:
            print(f"{page}: {link}: {why}")
        print(f"check-book: {len(pages)} pages, {links} links, {len(broken)} broken, "
              f"{len(warnings)} mdbook warnings")
        return 1 if broken or warnings or not pages else 0


if __name__ == "__main__":
    sys.exit(main())
