"""Why a contact row was refused, in the campaign's language: one table per language, nothing scattered.

Codes are stable; texts are what the operator reads in reports and in the rejected file.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_LOCALE", "LOCALES", "REJECTED_HEADER", "describe"]

DEFAULT_LOCALE: Final = "pt-BR"

EN: Final = {
    "empty": "empty",
    "not_a_number": "not a phone number",
    "too_short": "too short",
    "too_long": "too long",
    "unknown_country": "unknown country code",
    "has_extension": "has an extension",
    "excel_digits_lost": "digits lost to Excel scientific notation; format the column as text",
    "wrong_length": "wrong length for {region}",
    "invalid": "invalid number for {region}",
    "missing_ddd": "invalid number for {region} (missing area code/DDD?)",
    "missing_nine": "invalid number for {region} (mobile number without the leading 9?)",
    "short_local": "invalid number for {region} (only {digits} digits after area code {ddd})",
    "invalid_phone": "invalid phone: {reason}",
    "duplicate": "duplicate phone",
    "opted_out": "opted out",
    "missing_field": 'missing field "{field}"',
}

PT_BR: Final = {
    "empty": "vazio",
    "not_a_number": "não é um número de telefone",
    "too_short": "curto demais",
    "too_long": "longo demais",
    "unknown_country": "código de país desconhecido",
    "has_extension": "tem ramal",
    "excel_digits_lost": "dígitos perdidos na notação científica do Excel; formate a coluna como texto",
    "wrong_length": "tamanho errado para {region}",
    "invalid": "número inválido para {region}",
    "missing_ddd": "número inválido para {region} (falta o DDD?)",
    "missing_nine": "número inválido para {region} (celular sem o 9 na frente?)",
    "short_local": "número inválido para {region} (só {digits} dígitos depois do DDD {ddd})",
    "invalid_phone": "telefone inválido: {reason}",
    "duplicate": "telefone repetido",
    "opted_out": "descadastrado (opt-out)",
    "missing_field": 'falta o campo "{field}"',
}

LOCALES: Final = {"en": EN, "pt-BR": PT_BR}

# The two columns the rejected file adds after the input's own.
REJECTED_HEADER: Final = {"en": ("line", "reason"), "pt-BR": ("linha", "motivo")}


def describe(code: str, locale: str = "en", **params: object) -> str:
    """The text for `code` in `locale` (English for a locale without a table)."""
    table = LOCALES.get(locale, EN)
    return table[code].format(**params)
