"""The one configuration schema: `strangler.yaml`, loaded and validated at start-up.

Every key is declared in schema.py and settings.py with its default and a description;
docs/strangler.schema.json is generated from them (`strangler config-schema`), and
proxy/commands/demo_config/strangler.yaml is a complete example. A file that does not
fit raises `ConfigError` with every problem, one line each:
`file:line:col: dotted.key: what is wrong`.
"""

import os

from strangler.proxy.config.compare import CompareSettings as CompareSettings
from strangler.proxy.config.errors import ConfigError as ConfigError
from strangler.proxy.config.errors import Problem as Problem
from strangler.proxy.config.jwt import JwtSettings as JwtSettings
from strangler.proxy.config.load import parse, read
from strangler.proxy.config.schema import json_schema as json_schema
from strangler.proxy.config.settings import DEFAULT_HTTP_PASSTHROUGH as DEFAULT_HTTP_PASSTHROUGH
from strangler.proxy.config.settings import DIALECT_AUTH as DIALECT_AUTH
from strangler.proxy.config.settings import DIALECTS as DIALECTS
from strangler.proxy.config.settings import LOG_LEVELS as LOG_LEVELS
from strangler.proxy.config.settings import Address as Address
from strangler.proxy.config.settings import AuthStyle as AuthStyle
from strangler.proxy.config.settings import Backend as Backend
from strangler.proxy.config.settings import Config as Config
from strangler.proxy.config.settings import FlagsSettings as FlagsSettings
from strangler.proxy.config.settings import LimitSettings as LimitSettings
from strangler.proxy.config.settings import LoggingSettings as LoggingSettings
from strangler.proxy.config.settings import RelaySettings as RelaySettings
from strangler.proxy.config.settings import Route as Route
from strangler.proxy.config.settings import ShadowSettings as ShadowSettings
from strangler.proxy.config.settings import TicketSettings as TicketSettings


def parse_config(text: str, source: str) -> Config:
    """Validate the text of a `strangler.yaml`; relative paths resolve beside `source`."""
    # The one import up the layers, recorded in pyproject's [tool.importlinter]: a jwt
    # section is checked by building the verifier it configures (which imports jwt.py).
    from strangler.proxy.edge.identity import JwtVerifier

    return parse(text, source, verify=JwtVerifier)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the configuration file at `path`."""
    return parse_config(read(path), os.fspath(path))
