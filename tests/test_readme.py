"""README.md stays short, and no relative link in it or in docs/ points nowhere.

The README says what Tenantry is and links to the documentation; the detail lives in
docs/ (the MkDocs site). Relative links must work on GitHub as well as in the site, so
each is resolved against the file that holds it and must name an existing file.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_LIMIT = 8 * 1024

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\S\n]*$", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_INLINE = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.MULTILINE)
_HTML = re.compile(r"""<(?:a|img)\s[^>]*?(?:href|src)=["']([^"']+)["']""", re.IGNORECASE)


def relative_links(markdown: str) -> list[str]:
    """Targets of the links and images that point into the repository (not code)."""
    text = _CODE.sub("", _FENCE.sub("", markdown))
    targets = [
        m.group(1) for pattern in (_INLINE, _DEFINITION, _HTML) for m in pattern.finditer(text)
    ]
    return [t for t in targets if not urlsplit(t).scheme and not t.startswith(("#", "//"))]


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in relative_links(path.read_text(encoding="utf-8")):
        file = unquote(urlsplit(target).path)
        if file and not (path.parent / file).exists():
            broken.append(target)
    return broken


def pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def test_the_readme_is_under_8_kb() -> None:
    size = len(README.read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes: move detail to docs/"


def test_every_relative_link_points_to_an_existing_file() -> None:
    problems = {
        str(page.relative_to(ROOT)): broken for page in pages() if (broken := broken_links(page))
    }
    assert not problems, f"links to files that do not exist: {problems}"


def test_the_readme_links_to_the_documentation() -> None:
    targets = {urlsplit(t).path for t in relative_links(README.read_text(encoding="utf-8"))}
    for page in ("docs/quickstart.md", "docs/benchmarks.md", "docs/reliability.md"):
        assert page in targets, page


def test_the_link_check_finds_broken_links_and_ignores_code(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# There\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md#a-heading) [gone](missing.md) ![img](pics/a.png)\n"
        "[web](https://example.com/x.md) [anchor](#local) [ref]\n\n"
        "`[code](not-checked.md)`\n\n"
        "```md\n[fenced](not-checked-either.md)\n```\n\n"
        '<img src="gone.png">\n\n'
        "[ref]: also-missing.md\n"
    )
    assert sorted(broken_links(page)) == ["also-missing.md", "gone.png", "missing.md", "pics/a.png"]
