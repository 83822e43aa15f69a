"""Text coordinates as integer codes, with their labels in the array's attributes.

Why: Zarr 3's core specification has no string data type. zarr-python's ``string`` (the
``vlen-utf8`` codec of the zarr-extensions registry), which stores of ``actstats.store/1``
use, is refused by TensorStore's zarr3 driver (0.1.86), and so are zarr-python's
``null_terminated_bytes`` and ``fixed_length_utf32``: only numeric and boolean data types
are read by every Zarr 3 implementation. So from ``actstats.store/2`` on, a text coordinate
(``split``, ``activation_fn``, ``init``, ``optimizer``, ``dataset``, ``config``,
``layer_activation_fn``) is an ``int32`` array of codes, and its attributes say what each
code means:

- ``labels``: always; the exact text of each code as a list of strings, code k being
  ``labels[k]``. It holds any text (``config`` is JSON text, ``layer_activation_fn`` pads
  with ``""``).
- ``flag_values`` (``[0, 1, …, n−1]``) and ``flag_meanings`` (the labels joined by blanks):
  CF's attributes for coded values (CF conventions §3.5), which CF-aware tools read. Written
  only when every label is one CF word (letters, digits and ``_ - . + @``), since a label
  with a blank, another character or none at all cannot be told apart in ``flag_meanings``.

Codes count up from 0 in the order their labels first appear (C order), so ``split`` of
capture's stores is ``labels = ["train", "test"]``. The fill value is −1: a chunk missing
from the store reads as codes outside the labels, refused, never as a label.

:func:`encode` makes codes and attributes (:func:`~actstats.store.create_store` calls it for
every writer); :func:`label_problem` checks the attributes and :func:`code_problem` the codes
(:func:`~actstats.store.open_store` and :func:`~actstats.store.verify_store`);
:func:`decode` turns codes back into the text coordinate that ``open_store`` returns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

#: The attribute that holds the text of each code: code k is ``labels[k]``.
LABELS = "labels"
#: The data type actstats writes codes in (readers accept any integer type).
CODE_DTYPE = "int32"
#: The fill value of a code array: not a code, so a missing chunk is never read as a label.
CODE_FILL = -1
#: CF §3.5: each word of ``flag_meanings`` consists of letters, digits and ``_ - . + @``.
_CF_WORD = re.compile(r"[A-Za-z0-9_.+@-]+")


def encode(values) -> tuple[np.ndarray, dict]:
    """Codes (``int32``, the shape of `values`) and the attributes that say what they mean.

    Examples
    --------
    >>> codes, attributes = encode(["train", "train", "test"])
    >>> codes.tolist(), attributes
    ([0, 0, 1], {'labels': ['train', 'test'], 'flag_values': [0, 1], 'flag_meanings': 'train test'})
    >>> encode([["tanh", ""]])[1]  # "" is a label, but not a CF word
    {'labels': ['tanh', '']}
    """
    text = np.asarray(values).astype(str)
    distinct, first, inverse = np.unique(text.ravel(), return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # codes in the order labels first appear
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    codes = rank[inverse.ravel()].reshape(text.shape).astype(CODE_DTYPE)
    return codes, text_attributes([str(label) for label in distinct[order]])


def text_attributes(labels: Sequence[str]) -> dict:
    """The attributes of a code array whose code k means ``labels[k]``."""
    attributes: dict = {LABELS: list(labels)}
    if all(_CF_WORD.fullmatch(label) for label in labels):
        attributes["flag_values"] = list(range(len(labels)))
        attributes["flag_meanings"] = " ".join(labels)
    return attributes


def is_code_type(dtype) -> bool:
    """Whether `dtype` is an integer data type (the data type of codes)."""
    try:
        return np.dtype(dtype).kind in "iu"
    except TypeError:  # zarr-python's string data type
        return False


def label_problem(name: str, attributes: Mapping) -> str | None:
    """What is wrong with the attributes of code array `name`, in words, or None.

    Examples
    --------
    >>> label_problem("split", {"labels": ["train", "test"]}) is None
    True
    >>> label_problem("split", {"labels": "train test"})
    "variable 'split' holds codes, but its attribute 'labels' is not a list of strings (the text of each code)"
    """
    where = f"variable {name!r} holds codes, but its attribute"
    if LABELS not in attributes:
        return f"variable {name!r} holds codes but has no attribute {LABELS!r} (the text of each code)"
    labels = attributes[LABELS]
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        return f"{where} {LABELS!r} is not a list of strings (the text of each code)"
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            return f"{where} {LABELS!r} holds {_shown(label)} twice (two codes for one text)"
        seen.add(label)
    if "flag_values" in attributes and attributes["flag_values"] != list(range(len(labels))):
        return f"{where} 'flag_values' is not 0 … {len(labels) - 1}, the codes of its {len(labels)} labels"
    if "flag_meanings" in attributes and attributes["flag_meanings"] != " ".join(labels):
        return f"{where} 'flag_meanings' is not its labels joined by blanks"
    return None


def code_problem(name: str, dims: Sequence[str], codes, n_labels: int, origin: Sequence[int] = ()) -> str | None:
    """The first code of `codes` outside ``0 … n_labels − 1``, in words, or None. `origin`:
    the position of ``codes[0, …]`` in the whole array (a chunk's first element).

    Examples
    --------
    >>> code_problem("split", ("sample",), np.array([0, 1, 2]), 2)
    "variable 'split' holds code 2 at sample 2, but has 2 labels (codes 0 … 1)"
    """
    codes = np.asarray(codes)
    outside = (codes < 0) | (codes >= n_labels)
    if not outside.any():
        return None
    at = np.unravel_index(int(np.flatnonzero(outside.ravel())[0]), codes.shape)
    origin = tuple(origin) or (0,) * codes.ndim
    where = ", ".join(f"{d} {int(i) + int(o)}" for d, i, o in zip(dims, at, origin))
    labels = f"{n_labels} labels (codes 0 … {n_labels - 1})" if n_labels else "no labels"
    return f"variable {name!r} holds code {int(codes[at])} at {where}, but has {labels}"


class CodeError(ValueError):
    """Codes that cannot be decoded; the message is one line naming the variable."""


def decode(name: str, dims: Sequence[str], codes, attributes: Mapping) -> np.ndarray:
    """The text of each code: a numpy ``str`` array of the shape of `codes`.

    Raises :class:`CodeError` (one line) when the attributes are wrong or a code has no label.

    Examples
    --------
    >>> decode("split", ("sample",), np.array([0, 1, 0]), {"labels": ["train", "test"]}).tolist()
    ['train', 'test', 'train']
    """
    problem = label_problem(name, attributes)
    codes = np.asarray(codes)
    if problem is None:
        problem = code_problem(name, dims, codes, len(attributes[LABELS]))
    if problem is not None:
        raise CodeError(problem)
    # via objects: the str width is that of the longest text present, as a string array reads
    return np.array(attributes[LABELS], dtype=object)[codes.astype(np.intp)].astype(str)


def _shown(label: str) -> str:
    return repr(label) if len(label) <= 40 else repr(label[:37] + "...")
