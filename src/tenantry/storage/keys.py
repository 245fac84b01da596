"""Object keys: `companies/{company_id}/{category}/{unique id}-{safe filename}`.

Every key Tenantry stores is built here from validated parts, and every key that
arrives from outside (a URL, a migration) is parsed back here before it reaches a
backend, so no caller-supplied text can name a path outside a company's prefix.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass

from tenantry.auth import COMPANY_ID_PATTERN
from tenantry.errors import InvalidInput

KEY_PREFIX = "companies/"  # every key Tenantry stores starts with it
MAX_FILENAME_CHARS = 255
SAFE_NAME_CHARS = 120  # the filename part of a key; the whole key stays far below S3's 1024 bytes
CATEGORY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_UNIQUE_ID = r"[0-9a-f]{32}"
_UNSAFE_RUN = re.compile(r"[^\w.-]+")  # \w is Unicode-aware: letters and digits of any script
_KEY_PATTERN = re.compile(
    r"^companies/(?P<company>[^/]+)/(?P<category>[^/]+)/(?P<unique>" + _UNIQUE_ID + r")-"
    r"(?P<name>[^/]+)$"
)


# Control characters, surrogates and line/paragraph separators: never part of a name.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
# The joiners some scripts (Persian, Indic) and emoji sequences need; they cannot reorder
# text, unlike the other format characters (Cf).
_JOINERS = frozenset({"\u200c", "\u200d"})


def _invisible_format(char: str) -> bool:
    return unicodedata.category(char) == "Cf" and char not in _JOINERS


@dataclass(frozen=True, slots=True)
class ObjectKey:
    company_id: str
    category: str
    unique_id: str
    safe_name: str

    def __str__(self) -> str:
        return f"companies/{self.company_id}/{self.category}/{self.unique_id}-{self.safe_name}"


def validate_category(category: str) -> str:
    if not CATEGORY_PATTERN.fullmatch(category):
        raise InvalidInput(
            "category must be 1-64 characters: letters, digits, '_' or '-', "
            "starting with a letter or digit",
            details={"field": "category", "rule": "pattern"},
        )
    return category


def validate_filename(filename: str) -> str:
    """The original filename, normalised (NFC) and checked; rejects what cannot be a name."""
    name = unicodedata.normalize("NFC", filename).strip()
    problem = None
    if not name:
        problem = "must not be empty"
    elif len(name) > MAX_FILENAME_CHARS:
        problem = f"must be at most {MAX_FILENAME_CHARS} characters"
    elif any(unicodedata.category(char) in _REFUSED_CATEGORIES for char in name):
        problem = "must not contain control characters (NUL, newline, …)"
    elif any(_invisible_format(char) for char in name):
        problem = (
            "must not contain invisible format characters (bidirectional overrides such as"
            " U+202E, which can disguise an extension, zero-width spaces, …)"
        )
    elif "/" in name or "\\" in name:
        problem = "must be a name, not a path ('/' and '\\' are not allowed)"
    elif name.strip(".") == "":
        problem = "must not be '.' or '..'"
    if problem:
        raise InvalidInput(f"filename {problem}", details={"field": "filename", "rule": problem})
    return name


def safe_name(filename: str) -> str:
    """A key-safe form of a validated filename: Unicode letters and digits kept, the rest '-'.

    Leading dots and dashes go (no hidden files, nothing that looks like an option) and
    the stem is shortened so the extension survives.
    """
    cleaned = _UNSAFE_RUN.sub("-", validate_filename(filename)).strip(".-") or "file"
    if len(cleaned) <= SAFE_NAME_CHARS:
        return cleaned
    stem, dot, extension = cleaned.rpartition(".")
    if dot and 0 < len(extension) <= 16:
        return stem[: SAFE_NAME_CHARS - len(extension) - 1].rstrip(".-") + "." + extension
    return cleaned[:SAFE_NAME_CHARS].rstrip(".-")


def new_key(company_id: str, category: str, filename: str) -> ObjectKey:
    if not COMPANY_ID_PATTERN.fullmatch(company_id):
        raise InvalidInput("companyId is not valid", details={"field": "companyId"})
    return ObjectKey(company_id, validate_category(category), uuid.uuid4().hex, safe_name(filename))


def parse_key(key: str) -> ObjectKey:
    """The parts of a key Tenantry could have built, or `InvalidInput` (422).

    Rejects anything else — `..`, absolute paths, backslashes, NUL and other control
    characters, percent-escapes — because a key built by `new_key` never holds them.
    """
    match = _KEY_PATTERN.fullmatch(key)
    invalid = InvalidInput(
        "key is not a storage key (companies/<company>/<category>/<id>-<name>)",
        details={"field": "key", "rule": "format"},
    )
    if match is None:
        raise invalid
    parsed = ObjectKey(match["company"], match["category"], match["unique"], match["name"])
    if (
        not COMPANY_ID_PATTERN.fullmatch(parsed.company_id)
        or not CATEGORY_PATTERN.fullmatch(parsed.category)
        or _UNSAFE_RUN.search(parsed.safe_name)
        or parsed.safe_name.startswith((".", "-"))
        or len(parsed.safe_name) > SAFE_NAME_CHARS
    ):
        raise invalid
    return parsed
