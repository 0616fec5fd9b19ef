#!/usr/bin/env python3
"""Checks the links of the built manual and of the README, offline.

    scripts/check_links.py target/book     # after `mdbook build docs`

In the book: every relative link and image of every page must name a file that the build
wrote, and every `#fragment` an element id on that page. In README.md: every relative link must
name a file of the repository. Links to other sites are not fetched (CI has no internet); they
are listed with --external. Exit 1 with one line per broken link.
"""
import html.parser
import os
import re
import sys
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if a.get("name") and tag == "a":
            self.ids.add(a["name"])
        for key in ("href", "src"):
            if a.get(key):
                self.links.append(a[key])


def parse(path):
    p = Page()
    with open(path, encoding="utf-8") as f:
        p.feed(f.read())
    return p


def external(url):
    return bool(urllib.parse.urlparse(url).scheme) or url.startswith("//")


def check_book(book):
    broken, outside, pages = [], set(), {}
    for folder, _, files in os.walk(book):
        for name in files:
            if name.endswith(".html"):
                path = os.path.join(folder, name)
                pages[os.path.normpath(path)] = parse(path)
    if not pages:
        sys.exit(f"{book}: no pages; run `mdbook build docs` first")
    for path, page in sorted(pages.items()):
        rel = os.path.relpath(path, book)
        if rel in ("print.html", "404.html"):
            continue  # mdBook's own pages: the print page repeats every other page's links
        for link in page.links:
            if external(link):
                outside.add(link)
                continue
            if link.startswith(("mailto:", "javascript:")):
                continue
            target, _, fragment = link.partition("#")
            target = urllib.parse.unquote(target)
            file = os.path.normpath(os.path.join(os.path.dirname(path), target)) if target else path
            if os.path.isdir(file):
                file = os.path.join(file, "index.html")
            if not os.path.exists(file):
                broken.append(f"{rel}: {link}: no such file in the book")
            elif fragment and file.endswith(".html"):
                if fragment not in pages.get(file, parse(file)).ids:
                    broken.append(f"{rel}: {link}: no element with id `{fragment}`")
    return broken, outside


def check_readme():
    broken = []
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        if external(link) or link.startswith("#"):
            continue
        if not os.path.exists(os.path.join(ROOT, link.split("#")[0])):
            broken.append(f"README.md: {link}: no such file")
    return broken


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    book = args[0] if args else os.path.join(ROOT, "target", "book")
    broken, outside = check_book(book)
    broken += check_readme()
    if "--external" in sys.argv:
        print("\n".join(sorted(outside)))
    for line in broken:
        print(line, file=sys.stderr)
    if broken:
        sys.exit(1)
    print(f"links: {book} and README.md: every relative link resolves ({len(outside)} external not fetched)")


if __name__ == "__main__":
    main()
