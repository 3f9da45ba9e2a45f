"""The `strangler` command: run, check-config, config-schema, flags, client, backend, demo.

Each subcommand parses its arguments and calls into the layers below; what a command
prints for a person lives beside it (`flags_text`), never in the proxy itself.
"""
