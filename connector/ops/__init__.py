"""Operations around the sync: the scheduler and each connection's durable schedule slot (`book`), stop
signals, what run history means (`history`), status views, alerts; their tables in `tables`.

Run leases and the API budget belong to a run, so they live with the engine (`sync/lock.py`,
`sync/budget.py`); logging is `connector/logs.py`.
"""
