"""``cloudtuner worker``: the process that runs jobs on a GPU machine for a cloudtuner server.

It speaks only HTTP to the server (``/api/worker/...``) and never imports server code.
"""
