"""`python -m strangler.proxy`: the `strangler` command."""

from strangler.proxy.commands.cli import main

raise SystemExit(main())
