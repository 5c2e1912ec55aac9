"""Pure building blocks of the online loop: exploration, interleaving.

Nothing here does I/O or knows Dagster or HTTP: serving and the pipeline call these functions
with plain values (request ids, list lengths, rankings, clicks) and log what they return.
"""
