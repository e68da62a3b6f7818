"""`pgtool status`: one screen that says whether the database is recoverable right now.

Each check lives in its own module and returns a `Section` (facts plus problems, each problem one line
with what to do); `collect.collect_status` runs them and `render` prints text or JSON. No typer here.
"""
