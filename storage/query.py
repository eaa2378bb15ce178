"""The search box's little language, parsed into terms and written out as FTS5 and tsquery syntax.

What a user may type: words (all must match), "a quoted phrase", a word ending in * (a prefix), -word or NOT word
(must not match), OR between two terms (either), AND (the default, accepted for habit). Nothing else is syntax:
every other character separates words, and the words themselves are reduced to runs of letters and digits, so
that no operator of FTS5 (NEAR, ^, :, {}, column filters) or of tsquery (&, |, !, <->, :*, weights) can come from
the user. The renderers below then quote each of those runs, and the queries pass them as bound parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A token as both databases' tokenizers cut text: letters and digits (FTS5's unicode61 and PostgreSQL's parser
# both split on "_", "-", "'", and every other symbol).
TOKEN = re.compile(r"[^\W_]+")
MAX_QUERY_CHARS = 1000
MAX_TERMS = 16
MAX_TOKENS_PER_TERM = 16
MAX_TOKEN_CHARS = 100  # longer runs are never indexed words (PostgreSQL skips words over 2047 bytes)
_LEX = re.compile(r'(?P<neg>-?)"(?P<phrase>[^"]*)"?|(?P<word>\S+)')


@dataclass(frozen=True)
class Term:
    """One word or phrase: its tokens in order; a prefix term matches words starting with its last token."""

    tokens: tuple[str, ...]
    prefix: bool = False


@dataclass(frozen=True)
class Query:
    """What a search asks: every group must match (a group matches when any of its terms does), and no excluded
    term may. `truncated` tells that part of an oversized query was left out."""

    groups: tuple[tuple[Term, ...], ...] = ()
    excluded: tuple[Term, ...] = ()
    truncated: bool = False
    terms: tuple[Term, ...] = field(default=(), compare=False)

    @property
    def empty(self) -> bool:
        """True when the query asks for no words at all (then only the filters apply)."""
        return not self.groups and not self.excluded

    @property
    def positive(self) -> bool:
        """True when some words must match (results can then be ranked by relevance)."""
        return bool(self.groups)


def _term(text: str, prefix: bool) -> Term | None:
    # A run longer than any indexed word is cut, not dropped: it then matches nothing, as it should.
    tokens = tuple(t[:MAX_TOKEN_CHARS] for t in TOKEN.findall(text.lower()))
    if not tokens:
        return None
    return Term(tokens[:MAX_TOKENS_PER_TERM], prefix)


def _items(text: str) -> list[tuple[str, Term | None, bool]]:
    """(kind, term, negated) for each piece: kind is "term", "or" or "not"."""
    items: list[tuple[str, Term | None, bool]] = []
    for match in _LEX.finditer(text):
        if match.group("word") is None:
            items.append(("term", _term(match.group("phrase"), False), bool(match.group("neg"))))
            continue
        word = match.group("word")
        if word in ("OR", "|", "||"):
            items.append(("or", None, False))
        elif word == "NOT":
            items.append(("not", None, False))
        elif word != "AND":
            negated = word.startswith("-") and len(word) > 1
            body = word[1:] if negated else word
            items.append(("term", _term(body, body.endswith("*")), negated))
    return items


def parse(text: str | None) -> Query:
    """The query a search box's text asks for; never raises, whatever the text."""
    text = text or ""
    truncated = len(text) > MAX_QUERY_CHARS or any(len(t) > MAX_TOKEN_CHARS for t in TOKEN.findall(text))
    groups: list[list[Term]] = []
    excluded: list[Term] = []
    pending_or = pending_not = last_positive = False
    count = 0
    for kind, term, negated in _items(text[:MAX_QUERY_CHARS]):
        if kind == "or":
            pending_or = last_positive  # "a OR b" joins b to a's group; after an exclusion, OR means nothing
            continue
        if kind == "not":
            pending_not = True
            continue
        if term is None:
            continue
        if count == MAX_TERMS:
            truncated = True
            break
        count += 1
        last_positive = not (negated or pending_not)
        if not last_positive:
            excluded.append(term)
        elif pending_or:
            groups[-1].append(term)
        else:
            groups.append([term])
        pending_or = pending_not = False
    terms = tuple(t for g in groups for t in g) + tuple(excluded)
    return Query(tuple(tuple(g) for g in groups), tuple(excluded), truncated, terms)


def _any(terms: tuple[Term, ...]) -> tuple[tuple[Term, ...], ...]:
    return (terms,) if terms else ()


# --- FTS5 ---------------------------------------------------------------------------------------------------
def _fts5_term(term: Term) -> str:
    # Tokens hold letters and digits only: nothing in them can close the quotes.
    return '"' + " ".join(term.tokens) + '"' + ("*" if term.prefix else "")


def fts5_match(groups: tuple[tuple[Term, ...], ...], columns: tuple[str, ...] | None = None) -> str:
    """An FTS5 MATCH expression: every group, each any of its terms; within `columns` only when given."""
    expr = " AND ".join("(" + " OR ".join(_fts5_term(t) for t in group) + ")" for group in groups)
    return "{" + " ".join(columns) + "} : (" + expr + ")" if columns else expr


def fts5_any(terms: tuple[Term, ...], columns: tuple[str, ...] | None = None) -> str:
    """An FTS5 MATCH expression for rows holding any of `terms`."""
    return fts5_match(_any(terms), columns)


# --- PostgreSQL tsquery --------------------------------------------------------------------------------------
def _ts_term(term: Term, weights: str) -> str:
    # to_tsquery() reads each quoted token through the text search configuration (stemming it), as to_tsvector()
    # read the stored text; tokens hold letters and digits only, so nothing in them can close the quotes.
    last = len(term.tokens) - 1
    parts = [f"'{tok}'" + (":*" if term.prefix and i == last else (":" if weights else "")) + weights
             for i, tok in enumerate(term.tokens)]
    return "(" + " <-> ".join(parts) + ")"


def tsquery(groups: tuple[tuple[Term, ...], ...], weights: str = "") -> str:
    """A to_tsquery() text: every group, each any of its terms; only lexemes of `weights` (e.g. "A") when given."""
    return " & ".join("(" + " | ".join(_ts_term(t, weights) for t in group) + ")" for group in groups)


def tsquery_any(terms: tuple[Term, ...], weights: str = "") -> str:
    """A to_tsquery() text for rows holding any of `terms`."""
    return tsquery(_any(terms), weights)


# --- Highlights ----------------------------------------------------------------------------------------------
# What the databases put around a matched word (FTS5's highlight()/snippet(), PostgreSQL's ts_headline()): code
# points from Unicode's private use area, which no prompt or message has reason to hold.
MARK_START = "\ue000"
MARK_END = "\ue001"


def segments(marked: str) -> list[dict[str, object]]:
    """[{"text": …, "match": bool}, …] from a text with marks around its matches: the UIs render the matches
    without parsing markup (a prompt may hold any HTML). Marks that do not pair up leave plain text."""
    parts = re.split(f"({MARK_START}|{MARK_END})", marked)
    out: list[dict[str, object]] = []
    inside = False
    for part in parts:
        if part in (MARK_START, MARK_END):
            if (part == MARK_START) == inside:
                return [{"text": marked.replace(MARK_START, "").replace(MARK_END, ""), "match": False}]
            inside = not inside
        elif part:
            out.append({"text": part, "match": inside})
    return out if not inside else [{"text": marked.replace(MARK_START, "").replace(MARK_END, ""), "match": False}]


def spelled(term: Term, star: bool = True) -> str:
    """A term as the user may read it back: its words, and a * when it is a prefix (and `star`)."""
    return " ".join(term.tokens) + ("*" if term.prefix and star else "")
