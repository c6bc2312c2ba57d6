"""Kubernetes resource quantities as exact numbers.

The API server rewrites quantities into a canonical form (``0.5`` becomes ``500m``,
``1024Mi`` becomes ``1Gi``), so comparing the text a user wrote in Git with the text the
server returns would report drift on every run.  Parsing both to an exact ``Decimal``
makes ``1000m == 1`` and ``1Gi == 1024Mi`` without the rounding a float would bring.

The grammar is Kubernetes' own (``k8s.io/apimachinery/pkg/api/resource``)::

    <quantity> ::= <signedNumber><suffix>
    <suffix>   ::= <binarySI> | <decimalExponent> | <decimalSI>
    binarySI   = Ki | Mi | Gi | Ti | Pi | Ei
    decimalSI  = n | u | m | "" | k | M | G | T | P | E
    decimalExponent = e<signedInteger> | E<signedInteger>

Anything else is simply not a quantity: ``parse_quantity`` returns None, never raises,
because the diff calls it on arbitrary data from Git and from clusters.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation, localcontext

#: Longer strings are not hand-written quantities; refusing them bounds the work per value.
MAX_QUANTITY_CHARS = 64

_BINARY_SI = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL_SI = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}

_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:[eE](?P<exponent>[+-]?[0-9]+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)",
    re.ASCII,
)


def parse_quantity(value: object) -> Decimal | None:
    """The exact value of a quantity written as a string or a JSON number, else None.

    Booleans are not quantities even though Python counts them as integers; floats are
    read through their shortest text (``0.1`` is one tenth, as the YAML said).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if not isinstance(value, str) or len(value) > MAX_QUANTITY_CHARS:
        return None
    match = _QUANTITY.fullmatch(value)
    if match is None:
        return None
    number, exponent, suffix = match.group("number", "exponent", "suffix")
    try:
        if exponent is not None:
            # Built from text, so exact: the exponent only moves the decimal point.
            return Decimal(f"{number}E{exponent}")
        if suffix in _BINARY_SI:
            # Enough digits that multiplying by 1024**6 (19 digits) can never round.
            with localcontext() as ctx:
                ctx.prec = len(number) + 24
                scaled: Decimal = Decimal(number) * (1024 ** _BINARY_SI[suffix])
                return scaled
        return Decimal(f"{number}E{_DECIMAL_SI[suffix or '']}")
    except (InvalidOperation, ArithmeticError, ValueError):
        return None


def is_quantity(value: object) -> bool:
    """Whether ``value`` parses as a Kubernetes quantity."""
    return parse_quantity(value) is not None


def quantities_equal(left: object, right: object) -> bool:
    """True when both sides are quantities of the same value (``"1Gi"`` and ``"1024Mi"``)."""
    a = parse_quantity(left)
    if a is None:
        return False
    b = parse_quantity(right)
    return b is not None and a == b
