"""Paying Bouncer only for what it must answer, and knowing the cost before spending it.

A request's stored rows are billable only when they are the first of their address (de-duplication at ingest),
valid by syntax (prefilter.py: the others are answered locally) and not answered by an earlier request within
RESULT_CACHE_DAYS (cache.py). estimate.py counts the same before anything is stored; reservations.py holds the
credits of requests not yet submitted, so two requests cannot both count on one balance.
"""
