"""Database access: the embedded server or DATABASE_URL, migrations, and named SQL queries."""

import psycopg
from psycopg.rows import TupleRow

Connection = psycopg.Connection[TupleRow]
