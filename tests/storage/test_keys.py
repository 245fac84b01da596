"""Key building and parsing: what a key may hold, and what can never get into one."""

from __future__ import annotations

import pytest

from tenantry.errors import InvalidInput
from tenantry.storage.keys import SAFE_NAME_CHARS, new_key, parse_key, safe_name


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("my report (final).pdf", "my-report-final-.pdf"),
        ("Résumé.pdf", "Résumé.pdf"),
        ("Re\u0301sume\u0301.pdf", "Résumé.pdf"),  # decomposed accents are composed (NFC)
        ("履歴書.docx", "履歴書.docx"),
        (".htaccess", "htaccess"),
        ("-rf", "rf"),
        ("\u0645\u06cc\u200c\u0631\u0648\u062f.txt", "\u0645\u06cc-\u0631\u0648\u062f.txt"),
        ("a<b>c|d?.txt", "a-b-c-d-.txt"),
        ("%2e%2e%2f.txt", "2e-2e-2f.txt"),
        ("x...", "x"),
        ("X", "X"),
        ("Xmas LaTeX", "Xmas-LaTeX"),
        ("(#)", "file"),  # nothing of the name is left
    ],
)
def test_safe_names(filename: str, expected: str) -> None:
    assert safe_name(filename) == expected


def test_long_names_keep_their_extension() -> None:
    name = safe_name("a" * 250 + ".pdf")
    assert len(name) == SAFE_NAME_CHARS
    assert name.endswith(".pdf")


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("X" * 200 + ".pdf", "X" * 116 + ".pdf"),
        ("X" * 200, "X" * SAFE_NAME_CHARS),
        ("v1.2 " + "a" * 200 + ".pdf", "v1.2-" + "a" * 111 + ".pdf"),  # the last dot
        ("a" * 200 + ".c", "a" * 118 + ".c"),
        ("a" * 200 + "." + "e" * 16, "a" * 103 + "." + "e" * 16),  # the longest extension
        ("a" * 200 + "." + "e" * 17, "a" * SAFE_NAME_CHARS),  # too long to be one
        ("a" * 115 + "-" + "b" * 100 + ".pdf", "a" * 115 + ".pdf"),  # no '-' before the dot
        ("a" * 119 + "-" + "b" * 100, "a" * 119),  # nor at the end
        ("a" * 115 + " .pdf", "a" * 115 + "-.pdf"),  # exactly the limit: kept as it is
    ],
)
def test_long_names_are_cut_before_the_extension(filename: str, expected: str) -> None:
    assert safe_name(filename) == expected


def test_the_longest_filename_is_accepted() -> None:
    assert safe_name("x" * 255) == "x" * SAFE_NAME_CHARS


@pytest.mark.parametrize(
    "filename", ["", " ", "..", ".", "a/b", "a\\b", "a\x00b", "a\nb", "x" * 256, "\x7f"]
)
def test_unusable_filenames_are_refused(filename: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        safe_name(filename)
    assert raised.value.details["field"] == "filename"


@pytest.mark.parametrize(
    "filename",
    [
        "invoice\u202etxt.exe",  # right-to-left override: shown as "invoiceexe.txt"
        "a\u2066b\u2069.pdf",  # isolates
        "a\u200eb.pdf",  # left-to-right mark
        "a\u200bb.pdf",  # zero-width space
        "\ufeffa.pdf",  # byte order mark
        "a\u2028b.pdf",  # line separator
        "a\ud800b.pdf",  # lone surrogate
    ],
)
def test_invisible_and_reordering_characters_are_refused(filename: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        safe_name(filename)
    assert raised.value.details["field"] == "filename"
    assert "filename must not contain" in raised.value.message


@pytest.mark.parametrize(
    "category", ["", "a/b", "..", "a b", "é", "x" * 65, "_x", "docs\u202e", "do\u200bcs"]
)
def test_bad_categories_are_refused(category: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        new_key("acme", category, "a.pdf")
    assert raised.value.details["field"] == "category"


def test_new_keys_parse_back_and_are_unique() -> None:
    first = new_key("acme", "docs", "Résumé final.pdf")
    second = new_key("acme", "docs", "Résumé final.pdf")
    assert str(first) != str(second)
    assert str(first).startswith("companies/acme/docs/")
    assert parse_key(str(first)) == first
    longest = new_key("acme", "docs", "x" * 255)
    assert parse_key(str(longest)) == longest


@pytest.mark.parametrize(
    "key",
    [
        "companies/acme/docs/../x",
        "companies/acme/../../etc/0123456789abcdef0123456789abcdef-passwd",
        "/companies/acme/docs/0123456789abcdef0123456789abcdef-a.pdf",
        "companies/acme/docs/0123456789abcdef0123456789abcdef-a.pdf/",
        "companies/acme/docs/0123456789abcdef0123456789abcdef-a\x00.pdf",
        "companies/acme/docs/0123456789abcdef0123456789abcdef-%2e%2e",
        "companies/acme/docs/0123456789abcdef0123456789abcdef-..",
        "companies/acme/docs/0123456789abcdef0123456789abcdef-.hidden",
        "companies/acme/docs/0123456789abcdef0123456789abcdef--rf",
        "companies/../docs/0123456789abcdef0123456789abcdef-a.pdf",
        "companies/acme/docs/0123456789ABCDEF0123456789abcdef-a.pdf",
        "companies/acme/docs\\0123456789abcdef0123456789abcdef-a.pdf",
        "other/acme/docs/0123456789abcdef0123456789abcdef-a.pdf",
    ],
)
def test_foreign_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_key(key)
    assert raised.value.details == {"field": "key", "rule": "format"}
