"""`pgtool top`: the slowest statements from pg_stat_statements, in the terminal. No typer here."""
