"""What every JSON file we write shares: one schema version, one non-finite-number policy, one writer.

The report, stored baselines and named runs are read by people, CI steps and later sessions, so they
must be strict JSON: `request_rate` may be inf, which `json.dumps` would write as a bare `Infinity`
that most parsers reject. Every model we write derives from `Model`, whose policy is pydantic's own
`ser_json_inf_nan="strings"` ("Infinity", "-Infinity", "NaN": strings pydantic reads back into
floats), and every file is written by `write_document` from such a model, so no file can differ.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

#: One version for every file we write (report, baselines, runs); 2 added windows, warnings,
#: per-request seeds and target log-probabilities. A stored file of an older version is measured
#: again, never read as if its missing fields were empty.
SCHEMA_VERSION = 2


class Model(BaseModel):
    """The base of every model that reaches a file: the policy applies to the model dumped and to
    each nested model by its own config, so a nested model without it would write null for inf."""

    model_config = ConfigDict(ser_json_inf_nan="strings")


def write_document(path: Path, document: Model, indent: int = 1, exclude: Any = None) -> Path:
    """Write `document` through a temporary file and `os.replace`, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = document.model_dump_json(indent=indent, exclude=exclude) + "\n"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
