"""dispara: WhatsApp campaigns and audio jobs from the command line, queued in Postgres."""

__version__ = "0.1.0"
