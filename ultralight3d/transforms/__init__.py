"""Data pipelines: dataset protocols (declarative, in the repository's top-level ``transforms/``) and custom transforms.

Public API: :func:`get_pipeline`, :func:`get_protocol`, :func:`list_protocols`, :class:`LoadChannelsd`,
:class:`ChannelArgmaxd` (with :func:`channel_argmax`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import lazy_exports

if TYPE_CHECKING:  # the names of _EXPORTS, for type checkers and editors
    from .argmax import ChannelArgmaxd, channel_argmax
    from .dictionary import LoadChannelsd, find_user_error, load_channels
    from .protocols import PROTOCOL_DIR_ENV, STAGES, get_pipeline, get_protocol, list_protocols, protocol_dir

_EXPORTS = {
    ".argmax": ["ChannelArgmaxd", "channel_argmax"],
    ".dictionary": ["LoadChannelsd", "find_user_error", "load_channels"],
    ".protocols": ["PROTOCOL_DIR_ENV", "STAGES", "get_pipeline", "get_protocol", "list_protocols", "protocol_dir"],
}
__all__ = [
    "ChannelArgmaxd", "channel_argmax",
    "LoadChannelsd", "load_channels", "find_user_error", "get_pipeline", "get_protocol", "list_protocols",
    "protocol_dir",
    "PROTOCOL_DIR_ENV", "STAGES",
]  # fmt: skip
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
