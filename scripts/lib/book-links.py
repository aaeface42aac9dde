#!/usr/bin/env python3
"""mdBook preprocessor (book.toml's [preprocessor.repo-links]): a link
from a page in docs/ to a file of the source tree outside docs/
(`../plugin/src/tdx/mod.rs`, `../guest-tests/README.md#...`) becomes a
link to that file in the repository, `output.html.git-repository-url`
+ `/blob/main/` + its path, since the book holds only docs/. Links
between the pages, to anchors and to URLs are left alone, and so is
text in code (fenced blocks and `spans`).

mdBook runs it as `book-links.py supports RENDERER` (exit 0: every
renderer) and then with [context, book] as JSON on stdin, and reads the
book back on stdout (the mdBook book's "Preprocessors" chapter).
"""

import json
import os
import re
import sys

# An inline link or image target: ](target) or ](target "title").
LINK = re.compile(r"(\]\()([^)\s]+)")
# Code the links in must not change: fenced blocks and inline spans.
CODE = re.compile(r"(^```.*?^```[^\n]*$|`[^`\n]*`)", re.S | re.M)


def rewrite(content, page_dir, src, repo):
    """`content` of the page at `page_dir` (relative to the top of the
    tree) with links that leave `src` (docs) pointing into `repo`."""

    def link(m):
        target = m.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
            return m.group(0)
        path, hash_, fragment = target.partition("#")
        full = os.path.normpath(os.path.join(page_dir, path))
        if full == src or full.startswith(src + os.sep) or full.startswith(".."):
            return m.group(0)
        # GitHub's Markdown view has the headings' anchors, too.
        return m.group(1) + f"{repo}/blob/main/{full}" + hash_ + fragment

    parts = CODE.split(content)
    # split() with one group: code at the odd indices.
    return "".join(p if i % 2 else LINK.sub(link, p) for i, p in enumerate(parts))


def walk(items, src, repo):
    for item in items:
        chapter = item.get("Chapter") if isinstance(item, dict) else None
        if chapter is None:
            continue
        source = chapter.get("source_path") or chapter.get("path")
        if source:
            page_dir = os.path.dirname(os.path.join(src, source))
            chapter["content"] = rewrite(chapter["content"], page_dir, src, repo)
        walk(chapter.get("sub_items", []), src, repo)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "supports":
        return 0
    context, book = json.load(sys.stdin)
    repo = context["config"].get("output", {}).get("html", {}).get("git-repository-url")
    if not repo:
        print("book-links.py: book.toml has no output.html.git-repository-url", file=sys.stderr)
        return 1
    src = os.path.normpath(context["config"].get("book", {}).get("src", "src"))
    walk(book.get("items", book.get("sections", [])), src, repo.rstrip("/"))
    json.dump(book, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
