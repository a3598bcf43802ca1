"""Reference labels in the model's label space: the protocol's ``label_map``, applied exactly as training applies it.

A protocol (``transforms/<protocol>.json``) may carry ``label_map: {original value: new value}``: Synapse maps the
13 BTCV organs onto the 8 the papers report (5 organs become background). Training applies it to the label with
MONAI's ``MapLabelValued`` (values not in the map are kept); evaluation must score predictions against the reference
mapped the same way, or a 13-organ label meets an 8-organ prediction.

Example::

    >>> label_map = protocol_label_map("synapse")          # {1: 7, 2: 4, 3: 3, ..., 13: 0}
    >>> reference = remap_labels(btcv_label_array, label_map)
    >>> reference = remap_reference(btcv_label_array, "synapse")   # the same in one call
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import UserInputError

__all__ = ["protocol_label_map", "normalise_label_map", "remap_labels", "remap_reference"]


def normalise_label_map(label_map: Mapping[Any, Any] | None) -> dict[int, int] | None:
    """``{int: int}`` from a protocol-style map (string keys, ``_desc_``-style comment keys skipped); None when empty.

    Raises:
        UserInputError: a key or value is not an integer label value.
    """
    if not label_map:
        return None
    try:
        out = {int(k): int(v) for k, v in label_map.items() if not str(k).startswith("_")}
    except (TypeError, ValueError) as err:
        raise UserInputError(
            f"label_map must map integer label values to integer label values, got {dict(label_map)}"
        ) from err
    return out or None


def protocol_label_map(
    protocol: str | Mapping[str, Any] | None, transform_params: Mapping[str, Any] | None = None
) -> dict[int, int] | None:
    """The ``label_map`` training applies for ``protocol`` with ``transform_params`` (a ``label_map`` there overrides
    the protocol's, as in :func:`ultralight3d.transforms.get_pipeline`); None when there is none.

    Args:
        protocol: protocol name (``transforms/<protocol>.json``), a protocol dict, or None.
        transform_params: the bundle's ``transform_params``.

    Raises:
        UserInputError: unknown protocol.
    """
    params = dict(transform_params or {})
    if params.get("label_map") is not None:
        return normalise_label_map(params["label_map"])
    if protocol is None:
        return None
    if isinstance(protocol, str):
        from ..transforms import get_protocol

        protocol = get_protocol(protocol)
    return normalise_label_map(protocol.get("label_map"))


def remap_labels(array: np.ndarray, label_map: Mapping[Any, Any] | None) -> np.ndarray:
    """``array`` with each value ``k`` of ``label_map`` replaced by ``label_map[k]`` (other values kept), as MONAI's
    ``MapLabelValue`` does in training; the input is returned unchanged when there is no map."""
    mapping = normalise_label_map(label_map)
    if mapping is None:
        return array
    from monai.transforms import MapLabelValue

    mapper = MapLabelValue(orig_labels=list(mapping), target_labels=list(mapping.values()), dtype=np.int64)
    return np.asarray(mapper(np.asarray(array)), dtype=np.int64)


def remap_reference(
    label_array: np.ndarray, protocol: str | Mapping[str, Any] | None, transform_params: Mapping[str, Any] | None = None
) -> np.ndarray:
    """A reference label map in the model's label space: :func:`remap_labels` with :func:`protocol_label_map`."""
    return remap_labels(label_array, protocol_label_map(protocol, transform_params))
