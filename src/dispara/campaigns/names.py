"""One normalisation for column names and placeholders, so `Número`, ` NUMERO ` and `{numero}` agree."""

from __future__ import annotations

import unicodedata
from functools import lru_cache


@lru_cache(maxsize=1024)
def normalize_key(name: str) -> str:
    """Lower-case, accents stripped, inner spaces as `_`: `' Nome  Completo '` -> `nome_completo`."""
    decomposed = unicodedata.normalize("NFKD", name.strip().casefold())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return "_".join(bare.split())
