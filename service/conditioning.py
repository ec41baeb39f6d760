"""The ``class`` of a request against the model it names: an index, or None for "from the seed".

The field's shape (integer or string) is checked by ``api.ClassLabel``; whether the model has that
class is known only once the model is known, so it is checked here, with a 400 that lists them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from contract.latents import classes_for_seeds
from service.errors import invalid_field
from service.model_store import LoadedModel

# Rows submitted to the generate batcher carry this in the class column: draw it from the seed.
FROM_SEED = -1


def class_index(model: LoadedModel, value: Any) -> int | None:
    """The class index a request asks of ``model`` (None: it names none)."""
    if value is None:
        return None
    cond = model.manifest.conditioning
    if cond is None:
        raise invalid_field(
            "class", f"model {model.name!r} is not class-conditional: it takes no class"
        )
    try:
        return cond.index(value)
    except KeyError:
        pass
    # A form field is always text: "3" is class 3 unless a class is literally named "3".
    if isinstance(value, str) and value.isdigit() and int(value) < cond.num_classes:
        return int(value)
    listed = ", ".join(f"{i} {name!r}" for i, name in enumerate(cond.classes))
    shown = (
        repr(value) if not isinstance(value, str) or len(value) <= 100 else f"{value[:100]!r}..."
    )
    raise invalid_field(
        "class", f"model {model.name!r} has no class {shown}; its classes: {listed}"
    )


def row_classes(model: LoadedModel, seeds: np.ndarray, column: np.ndarray) -> np.ndarray | None:
    """The class of each generated row: the requested one, or the seed's own draw."""
    cond = model.manifest.conditioning
    if cond is None:
        return None
    classes = column.astype(np.int64)
    drawn = classes == FROM_SEED
    if drawn.any():
        classes[drawn] = classes_for_seeds(seeds[drawn], cond.num_classes)
    return classes
