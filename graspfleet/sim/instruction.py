"""Language instructions as token ids: "pick up the red cylinder" → ``[1, 2, 3, 4, 14, 0, 0, 0]``."""

from __future__ import annotations

import numpy as np

from graspfleet.sim.config import COLOURS, SHAPES

PAD_ID = 0
VOCABULARY: tuple[str, ...] = ("<pad>", "pick", "up", "the", *COLOURS, *SHAPES)
"""Token id → word. Id 0 pads instructions to a fixed length."""
_IDS = {word: i for i, word in enumerate(VOCABULARY)}


def instruction_text(colour: str, shape: str) -> str:
    """The instruction that names a target by colour and shape."""
    return f"pick up the {colour} {shape}"


def encode(text: str, length: int) -> np.ndarray:
    """Token ids of ``text`` right-padded to ``length`` (int32); unknown words are refused."""
    words = text.split()
    if len(words) > length:
        raise ValueError(f"instruction {text!r} has {len(words)} words, more than length={length}")
    ids = np.full(length, PAD_ID, dtype=np.int32)
    for i, word in enumerate(words):
        if word not in _IDS:
            raise ValueError(f"instruction word {word!r} is not in the vocabulary")
        ids[i] = _IDS[word]
    return ids


def decode(ids: np.ndarray) -> str:
    """Text of a token-id array, padding dropped."""
    return " ".join(VOCABULARY[int(i)] for i in np.asarray(ids) if int(i) != PAD_ID)
