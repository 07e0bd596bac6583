"""Checking a built site: every local ``href``/``src`` resolves to a file, every ``#anchor`` exists, and no page
loads a script, style sheet or font from the network."""
from __future__ import annotations

import html.parser
import urllib.parse
from pathlib import Path


class _PageParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, value)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key) and (key == "id" or tag == "a"):
                self.ids.add(a[key])
        for key in ("href", "src"):
            if a.get(key) is not None:
                self.links.append((tag, key, a[key]))
        if tag == "link" and a.get("href") is None:
            pass


def parse_page(path: Path) -> _PageParser:
    p = _PageParser()
    p.feed(path.read_text(encoding="utf-8", errors="replace"))
    return p


def check_site(html_dir: Path) -> list[str]:
    """Broken local links, images and anchors, and network resources, in every page of a built site."""
    html_dir = Path(html_dir)
    # the pages (not the theme's template fragments that sit in _static/)
    pages = sorted(p for p in html_dir.rglob("*.html") if "_static" not in p.relative_to(html_dir).parts)
    if not (html_dir / "index.html").is_file():
        return [f"{html_dir}/index.html is missing"]
    parsed = {p.resolve(): parse_page(p) for p in pages}
    problems = []
    for page, parser in parsed.items():
        rel = page.relative_to(html_dir.resolve())
        for tag, attr, value in parser.links:
            value = value.strip()
            if not value or value.startswith(("mailto:", "javascript:", "data:", "tel:")):
                continue
            url = urllib.parse.urlsplit(value)
            if url.scheme or value.startswith("//"):
                # a resource loaded from the network at view time (links the reader may follow are fine)
                if tag in ("script", "img", "iframe") or (tag == "link" and attr == "href" and
                                                         _is_stylesheet_link(parser, value)):
                    problems.append(f"{rel}: <{tag} {attr}={value!r}> loads from the network")
                continue
            target = page if not url.path else (page.parent / urllib.parse.unquote(url.path)).resolve()
            if url.path.endswith("/") or (target.is_dir()):
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{rel}: <{tag} {attr}={value!r}> points to a missing file")
                continue
            if url.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else parse_page(target).ids
                if urllib.parse.unquote(url.fragment) not in ids:
                    problems.append(f"{rel}: <{tag} {attr}={value!r}> points to a missing anchor")
    return problems


def _is_stylesheet_link(parser: _PageParser, value: str) -> bool:
    # <link href=...> of rel=stylesheet/preload/icon loads at view time; rel=canonical etc. does not. The parser
    # keeps no rel, so treat every network <link> ending in .css/.js/.woff* as a loaded resource.
    path = urllib.parse.urlsplit(value).path
    return path.endswith((".css", ".js", ".woff", ".woff2", ".ttf")) or "fonts.googleapis" in value


