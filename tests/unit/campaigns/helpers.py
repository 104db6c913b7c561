"""Shared campaign texts for the tests of this folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

CONTACTS = "nome,empresa,telefone\nAna,Padaria Pão Quente,11999990001\n"

MINIMAL = """\
name: Black Friday
contacts: contacts.csv
instances: [vendas-1]
templates:
  - type: text
    text: "Olá {nome}"
"""

WriteCampaign = Callable[..., Path]
