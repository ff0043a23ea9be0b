"""The exchange log: every request and answer in a SQLite file, the cache and replay built on it.

Nothing here is imported by ``import nbllm`` or ``%load_ext nbllm``: the first call that
records or looks up an exchange imports these modules and opens the database (the ``nbllm``
command imports only ``cli.py`` to build its parser).

    paths.py        where the log lives (NBLLM_LOG, ``log = false``, the user data folder)
    store.py        the database: schema, forward migrations, writes, one warning on failure
    writer.py       the background writer of a batch run's rows (many to a transaction)
    record.py       the row one exchange becomes (redacted: a key never reaches the file)
    fingerprint.py  the request fingerprint cache and replay look answers up by
    cache.py        cache modes (off, on, replay) and the lookup of a finished answer
    queries.py      listing, searching and totalling rows (``nbllm logs``, ``%llm log``/``usage``)
    report.py       those rows as tables, shared by the CLI and the magics
    hook.py         the observer and responder ``nbllm.response`` installs: log every exchange, answer from the log
    provenance.py   the ``nbllm`` metadata saved with every %%llm answer
    notebooks.py    ``nbllm cache import``: answers read back from saved outputs
    cli.py          ``nbllm logs ...`` and ``nbllm cache import``
"""
