"""Allow `python -m dispara`."""

from dispara.cli import main

main()
