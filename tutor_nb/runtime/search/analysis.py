"""How text becomes index terms, and a query becomes an FTS5 expression.

FTS5's ``unicode61`` tokenizer splits words at spaces and punctuation, which serves languages that
put spaces between words. Chinese and Japanese do not, and Korean glues particles to its words
(``피보나치수열의``), so a whole run of CJK characters would be one token that no query matches. The
trigram tokenizer would match inside such runs but cannot match a query shorter than three
characters, and most Korean and Chinese words are two. So, as Lucene's CJK analyzer does, each CJK
run is rewritten as its overlapping character bigrams before FTS5 sees it, followed by its last
character alone: ``피보나치`` is indexed as ``피보 보나 나치 치``. A query word of two or more CJK
characters becomes its bigrams; a single character becomes a prefix query, which finds it as the
start of a bigram or as a run's last character, so every occurrence is reachable.
"""

from __future__ import annotations

import re
from functools import lru_cache

#: Hangul (syllables, jamo), kana, CJK ideographs and their extensions and compatibility forms
_CJK = (
    "\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua960-\ua97f\uac00-\ud7af\ud7b0-\ud7ff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
)
_CJK_RUNS = re.compile(f"([{_CJK}]+)")  # splits text into other text and CJK runs, every other piece
#: a query word: letters and digits (what unicode61 keeps), or a CJK run
_WORD = re.compile(f"[{_CJK}]+|[^\\W_]+")
_IS_CJK = re.compile(f"[{_CJK}]")

#: English words too common to help a ranking; dropped from queries that have other words
STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from had has have how i if in into is it its me my "
    "no not of on or our so than that the their them then there these they this to was we were what "
    "when where which who whom why will with you your".split()
)

#: a query longer than this many terms is cut: ranking gains nothing and latency grows with each
MAX_TERMS = 48


@lru_cache(maxsize=65536)
def _spelled(run: str) -> str:
    """``피보나치`` as ``" 피보 보나 나치 치 "``: bigrams, then the last character alone."""
    return " " + " ".join([run[i : i + 2] for i in range(len(run) - 1)] + [run[-1]]) + " "


def index_form(text: str) -> str:
    """The text FTS5 indexes: the original, with each CJK run spelled as its bigrams."""
    if text.isascii():  # most chunks of most corpora: skip the scan
        return text
    pieces = _CJK_RUNS.split(text)
    pieces[1::2] = map(_spelled, pieces[1::2])  # no Python call per match inside the regex engine
    return "".join(pieces)


def query_terms(query: str) -> list[str]:
    """The distinct FTS5 terms of a natural-language query, in the order they appear.

    Each term is a quoted FTS5 string (or a quoted prefix), so nothing in a query is read as FTS5
    syntax. Stopwords are dropped unless nothing else is left.
    """
    terms: list[str] = []  # every term
    kept: list[str] = []  # the terms that are not stopwords
    for word in _WORD.findall(query.lower()):
        if _IS_CJK.match(word):
            grams = [word[i : i + 2] for i in range(len(word) - 1)]
            found = [f'"{g}"' for g in grams] or [f'"{word}"*']
            kept += found
        else:
            found = [f'"{word}"']
            if word not in STOPWORDS:
                kept += found
        terms += found
    chosen = kept or terms
    return list(dict.fromkeys(chosen))[:MAX_TERMS]


def keywords(query: str) -> str:
    """A query reduced to its searchable words: what ``rewrite_query`` reports it searched for."""
    words = [w for w in _WORD.findall(query) if w.lower() not in STOPWORDS]
    return " ".join(words) or query.strip()
