"""FlagFileError: the file, the key and the problem, as one line and across processes."""

from __future__ import annotations

import pickle

from strangler.flags.report import FlagFileError

SOURCE = "/etc/strangler/flags.yaml"


def test_error_string_is_source_key_problem() -> None:
    err = FlagFileError(SOURCE, "flags.f.rollout.unified", "must be a percentage.")
    assert str(err) == f"{SOURCE}: flags.f.rollout.unified: must be a percentage."
    assert str(FlagFileError(SOURCE, "", "the file cannot be read.")) == (
        f"{SOURCE}: the file cannot be read."
    )


def test_error_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(FlagFileError(SOURCE, "flags", "bad.")))
    assert (err.source, err.key, err.problem) == (SOURCE, "flags", "bad.")
