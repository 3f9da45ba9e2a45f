"""Running the proxy: one process serving (``runtime.server``), or `strangler run
--workers N`: N proxy processes on one port under one supervisor.

The supervisor carries no client traffic. It starts each worker as a fresh
interpreter (`strangler run --worker-index I`), so PROMETHEUS_MULTIPROC_DIR is in the
environment before the worker imports prometheus_client; restarts a worker that dies;
forwards SIGTERM, SIGINT and SIGHUP; and owns the admin port:

- `/metrics`: every worker's metrics combined from the shared directory, plus
  per-worker CPU, memory and restarts read from /proc;
- `/healthz`, `/readyz`: the supervisor's and each worker's readiness;
- any other path (`/flags/status`, `/shadow`, ...) is sent to every worker's private
  admin listener (loopback, a free port); JSON answers come back as one list with an
  entry per worker, anything else is worker 0's answer.

Each worker binds the public port with SO_REUSEPORT (the kernel spreads new
connections over them), watches the flag file itself and drains on SIGTERM exactly
as a single proxy does.

The parts: ``runtime.worker`` (what a worker does), ``runtime.supervisor`` (starting,
restarting and stopping them), ``runtime.worker_slot`` (one worker as the supervisor
sees it) and ``runtime.supervisor_admin`` (the shared admin port).
"""
