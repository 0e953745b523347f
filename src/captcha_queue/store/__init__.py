"""Where state lives: the Redis connection (one server, Sentinel or Cluster) and its error boundary
(``connection``), every key of a namespace (``keys``), the Lua scripts and their return codes (``scripts``,
``lua/``), and the embedded server (``server``).
"""
