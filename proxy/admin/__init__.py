"""The admin port: /metrics, /healthz, /readyz, /flags/*, /shadow and the status page.

It reads the proxy's state and never carries client traffic; `status_page` renders HTML
from plain values and is pure.
"""
