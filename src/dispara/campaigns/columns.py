"""Which header is the phone column (and which one a separate area code), judged by meaning.

Headers are reduced to words (accents, case, numbering and punctuation gone) and scored; the sample
rows break ties, preferring the column whose values look like mobiles.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from dispara.campaigns.phones import PhoneError, is_mobile, pick_phone

__all__ = ["Choice", "choose_ddd_column", "choose_phone_column", "words"]

# Words that make a header a phone column, with how strongly; mobile words win over plain phone words.
_MOBILE: Final = frozenset(
    {"whatsapp", "whats", "wpp", "wa", "zap", "zapzap", "celular", "cel", "cell", "cellphone", "mobile",
     "movel", "telemovel", "smartphone"}
)  # fmt: skip
_PHONE: Final = frozenset(
    {"telefone", "tel", "fone", "phone", "telephone", "telefono", "contato", "contact", "numero", "number",
     "num", "nro", "no", "n"}
)  # fmt: skip
_STRONG_PHONE: Final = frozenset({"telefone", "tel", "fone", "phone", "telephone", "telefono"})
_FILLER: Final = frozenset({"do", "da", "de", "dos", "das", "the", "of", "o", "a", "principal", "primary"})
# Words that say the column is about a phone but does not hold one (Google's `Phone 1 - Type`).
_NOT_A_NUMBER: Final = frozenset(
    {"type", "tipo", "label", "rotulo", "descricao", "obs", "observacao", "ramal", "ext", "extension",
     "fax", "email", "mail", "ddd", "ddi", "status", "valido", "valid", "optin", "optout", "data", "date",
     "cpf", "cnpj", "cep", "endereco", "address", "rua", "casa", "id", "pais", "country", "operadora"}
)  # fmt: skip
_DDD_WORDS: Final = frozenset({"ddd", "prefixo"})
_AREA_CODE: Final = ((("cod", "codigo", "code"), ("area",)),)
_SPLIT: Final = re.compile(r"[^a-z0-9]+")
_NUMBERED: Final = re.compile(r"([a-z]+)(\d+)$")


def words(header: str) -> tuple[str, ...]:
    """`'Nº do WhatsApp (1)'` -> `('no', 'do', 'whatsapp')`: lower case, no accents, no numbering."""
    decomposed = unicodedata.normalize("NFKD", header.casefold().replace("º", "o").replace("°", "o"))
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    found = []
    for word in _SPLIT.split(bare):
        if not word or word.isdigit():
            continue
        numbered = _NUMBERED.fullmatch(word)  # `telefone1`, `phone2`
        found.append(numbered[1] if numbered else word)
    return tuple(found)


def _name_score(header: str) -> int:
    """0: not a phone column; 1: only `numero`-like; 2: a phone word; 3: a mobile/WhatsApp word."""
    found = set(words(header))
    if not found or found & _NOT_A_NUMBER:
        return 0
    if found & _MOBILE:
        return 3
    if found & _STRONG_PHONE:
        return 2
    if found & _PHONE and found <= _PHONE | _FILLER:
        # Weak: `Número` is the house number in Brazilian address exports, `Contato` may be a name.
        return 1
    return 0


def is_ddd_header(header: str) -> bool:
    found = words(header)
    if not found or len(found) > 4:
        return False
    if set(found) & _DDD_WORDS:
        return True
    return any(set(found) & set(a) and set(found) & set(b) for a, b in _AREA_CODE)


@dataclass(frozen=True)
class Choice:
    index: int
    """Column index of the header."""
    others: tuple[int, ...] = ()
    """Other columns that were plausible too, best first."""


def _content_score(values: Sequence[str], country: str) -> tuple[int, int]:
    """(valid mobiles, valid numbers) among a column's sample values."""
    mobiles = valid = 0
    for value in values:
        if not value.strip():
            continue
        try:
            phone = pick_phone(value, country)
        except PhoneError:
            continue
        valid += 1
        mobiles += is_mobile(phone)
    return mobiles, valid


def choose_phone_column(
    header: Sequence[str], sample_rows: Sequence[Sequence[str]], country: str = "BR"
) -> Choice | None:
    """The best phone column, or None when no header reads as one."""
    scored = [(i, _name_score(name)) for i, name in enumerate(header)]
    candidates = [(i, score) for i, score in scored if score > 0]
    if not candidates:
        return None
    if any(score > 1 for _, score in candidates):
        candidates = [(i, score) for i, score in candidates if score > 1]

    def rank(item: tuple[int, int]) -> tuple[int, int, int, int]:
        i, score = item
        column = [row[i] for row in sample_rows if i < len(row)]
        mobiles, valid = _content_score(column, country)
        # Values decide before names: a `Telefone` full of mobiles beats an empty `Celular`.
        return (mobiles, valid, score, -i)

    ranked = sorted(candidates, key=rank, reverse=True)
    best = ranked[0][0]
    plausible = tuple(i for i, _ in ranked[1:] if rank((i, 0))[1] > 0 or not sample_rows)
    return Choice(best, plausible)


def choose_ddd_column(header: Sequence[str], phone_index: int) -> int | None:
    """A separate area-code column, if the header has exactly one."""
    found = [i for i, name in enumerate(header) if i != phone_index and is_ddd_header(name)]
    return found[0] if len(found) == 1 else None
