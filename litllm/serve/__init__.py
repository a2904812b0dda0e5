"""`litllm serve`: one model behind OpenAI-compatible, nanochat-style and control routes, on LitServe.

server.py assembles the server, routes.py holds the HTTP side, worker.py the inference side, pool.py what the two
sides share of the workers (a mailbox each, a board of their state), jobs.py the training jobs of the control API,
client.py the `litllm client` command. This package's import stays light (no torch, no LitServe): the command line
imports what it needs when it needs it.
"""
