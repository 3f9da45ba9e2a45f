"""A JSON Schema for the part of the Prometheus Operator's PodMonitor
(monitoring.coreos.com/v1) that deploy/kustomize uses.

kubernetes-validate knows only Kubernetes' own kinds, and the operator's CRD is not
available offline, so this is written from the CRD's field reference: names, types and
the duration pattern as the operator declares them. It is closed (no other keys) so a
misspelt field fails here as it would be dropped silently by a lenient apply; a field
the CRD has and the manifests start to use is added here on purpose."""

from __future__ import annotations

from typing import Any

# The operator's Duration type (monitoring/v1 types.go): 30s, 1m30s, 0.
_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
    r"(([0-9]+)s)?(([0-9]+)ms)?)$",
}

_SECRET_KEY = {
    "type": "object",
    "required": ["key", "name"],
    "additionalProperties": False,
    "properties": {
        "key": {"type": "string", "minLength": 1},
        "name": {"type": "string", "minLength": 1},
        "optional": {"type": "boolean"},
    },
}

_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array", "items": {"type": "object"}},
    },
}

_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["port"],
    "properties": {
        "port": {"type": "string", "minLength": 1},  # a container port's name
        "path": {"type": "string", "pattern": "^/"},
        "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
        "interval": _DURATION,
        "scrapeTimeout": _DURATION,
        "honorLabels": {"type": "boolean"},
        "authorization": {
            "type": "object",
            "additionalProperties": False,
            "required": ["credentials"],
            "properties": {"type": {"type": "string"}, "credentials": _SECRET_KEY},
        },
        "relabelings": {"type": "array", "items": {"type": "object"}},
        "metricRelabelings": {"type": "array", "items": {"type": "object"}},
    },
}

PODMONITOR_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "selector": _LABEL_SELECTOR,
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT},
                "sampleLimit": {"type": "integer", "minimum": 0},
            },
        },
    },
}
