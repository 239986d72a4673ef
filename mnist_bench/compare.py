"""The one rule for comparing a recorded number with a re-measured one.

Every check of a recorded result (`mnist-bench reproduce --check`, the robustness and
calibration checks, the export and docs checks, the tests) compares through this module:

- **exact**, everywhere: counts (errors, labels, images), integers, strings (weights digests,
  file hashes), booleans, and numbers computed from those alone (an accuracy is a count over a
  fixed number of images);
- **exact**, on the machine fingerprint that recorded the number
  (`provenance.fingerprints_match`): the same kernels on the same CPU give the same bits;
- **within float32 rounding**, elsewhere, for a float re-measured from float32 network outputs
  (probabilities, logits, losses). Another CPU, thread count or kernel library (oneDNN on or
  off) sums the same float32 terms in another order. The bound used is the classic one for a
  sum of n floating-point terms in any order (Higham, *Accuracy and Stability of Numerical
  Algorithms*, 2nd ed., section 4.2):

      |computed - exact| <= gamma(n) * sum(|t_i|),  gamma(n) = n u / (1 - n u),  u = 2**-24

  so two machines agree to ``2 gamma(n) * magnitude``, where ``magnitude`` is ``sum(|t_i|)``
  divided by what the sum is divided by (the mean of the terms' magnitudes for a mean). A
  quantity with a discontinuity (a confidence that moves across an ECE bin edge) adds the
  largest jump those terms can make (`slack`). The tolerance is derived, never widened until a
  check passes; the difference seen between an AMD EPYC Zen 4 and the Intel Xeon that wrote
  results/calibration.json was about 1e-7 of the ECE, where the rule allows about 1e-3.

    rule = float32_rule(n_terms=10_000, magnitude=0.005, same_fingerprint=False)
    problems = compare("results/calibration.json", "test.calibrated.ece", 0.00150, 0.00150, rule)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

FLOAT32_UNIT_ROUNDOFF = 2.0**-24  # u: half the distance from 1.0 to the next float32


def gamma(n: int) -> float:
    """``n u / (1 - n u)`` for float32's unit roundoff u: the relative error bound of a sum of
    `n` float32 terms in any order. Raises ValueError when n u >= 1 (no bound exists)."""
    if n < 0 or n * FLOAT32_UNIT_ROUNDOFF >= 1:
        raise ValueError(f"gamma(n) needs 0 <= n < 2**24, got {n}")
    nu = n * FLOAT32_UNIT_ROUNDOFF
    return nu / (1 - nu)


@dataclass(frozen=True)
class Rule:
    """How a recorded number and a re-measured one are compared.

    Attributes
    ----------
    name : {"exact", "float32"}
    tolerance : float
        The largest absolute difference allowed (0.0 for exact).
    why : str
        Where the rule comes from, in words (printed with every problem).
    """

    name: str
    tolerance: float = 0.0
    why: str = ""

    def holds(self, recorded: Any, measured: Any) -> bool:
        """Whether `measured` agrees with `recorded` under this rule. Only floats get a
        tolerance; an integer, a string, a boolean or None compares exactly."""
        if _is_number(recorded) and _is_number(measured):
            if self.name != "exact" and (_is_float(recorded) or _is_float(measured)):
                return abs(float(measured) - float(recorded)) <= self.tolerance
            return recorded == measured
        return type(recorded) is type(measured) and recorded == measured

    def __str__(self) -> str:
        if self.name == "exact":
            return f"exact ({self.why})" if self.why else "exact"
        return f"within {self.tolerance:.3g} ({self.why})"


EXACT = Rule("exact", why="counts, digests and hashes are exact on every machine")


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_float(value: Any) -> bool:
    return _is_number(value) and not isinstance(value, Integral)


def float32_rule(
    *, n_terms: int, magnitude: float, same_fingerprint: bool, slack: float = 0.0
) -> Rule:
    """The rule for a float re-measured from `n_terms` float32 terms.

    Parameters
    ----------
    n_terms : int
        How many float32 terms the number sums (e.g. 10,000 test images).
    magnitude : float
        ``sum(|t_i|)`` over the terms, divided as the number is (its mean magnitude for a
        mean), measured on this machine.
    same_fingerprint : bool
        Whether this machine's fingerprint is the one recorded with the number: then exact.
    slack : float, default=0.0
        The largest jump a discontinuity can add (an ECE bin edge crossed), >= 0.

    Returns
    -------
    Rule
        Exact on the same fingerprint; else ``2 gamma(n_terms) * magnitude + slack``.
    """
    if same_fingerprint:
        return Rule("exact", why="re-measured on the machine fingerprint that recorded it")
    if magnitude < 0 or slack < 0 or not math.isfinite(magnitude + slack):
        raise ValueError(f"magnitude and slack must be finite and >= 0, got {magnitude}, {slack}")
    tolerance = 2 * gamma(n_terms) * magnitude + slack
    why = f"float32 rounding: 2 gamma({n_terms:,}) x {magnitude:.3g}"
    if slack:
        why += f" + {slack:.3g} for bin edges"
    return Rule("float32", tolerance, why + "; another machine fingerprint")


@dataclass(frozen=True)
class Mismatch:
    """One recorded number that the re-measured one does not match under `rule`."""

    file: str
    field: str
    recorded: Any
    measured: Any
    rule: Rule

    def __str__(self) -> str:
        diff = ""
        if _is_number(self.recorded) and _is_number(self.measured):
            diff = f", difference {float(self.measured) - float(self.recorded):+.3g}"
        return (
            f"{self.file}: {self.field}: recorded {self.recorded!r}, re-measured "
            f"{self.measured!r}{diff}; rule: {self.rule}"
        )


def compare(
    file: str, field: str, recorded: Any, measured: Any, rule: Rule | Mapping[str, Rule] = EXACT
) -> list[Mismatch]:
    """The mismatches between a recorded value and a re-measured one, field by field.

    Parameters
    ----------
    file : str
        The file that recorded the value (named in each mismatch).
    field : str
        Its dotted path in that file, e.g. ``"test.calibrated"``.
    recorded, measured : number, str, bool, None, list or dict
        Compared leaf by leaf: dicts by key (a key missing on either side is a mismatch),
        lists by position.
    rule : Rule or mapping of str to Rule, default=EXACT
        One rule for every leaf, or one per top-level key of a dict (keys it does not name
        are exact).

    Returns
    -------
    list of Mismatch
        Empty when everything agrees.
    """
    if isinstance(recorded, Mapping) and isinstance(measured, Mapping):
        out = []
        for key in sorted(set(recorded) | set(measured), key=str):
            sub = f"{field}.{key}" if field else str(key)
            if key not in recorded or key not in measured:
                out.append(Mismatch(file, sub, recorded.get(key), measured.get(key), EXACT))
                continue
            leaf_rule = rule.get(key, EXACT) if isinstance(rule, Mapping) else rule
            out += compare(file, sub, recorded[key], measured[key], leaf_rule)
        return out
    if isinstance(recorded, list | tuple) and isinstance(measured, list | tuple):
        if len(recorded) != len(measured):
            return [Mismatch(file, f"{field} (length)", len(recorded), len(measured), EXACT)]
        return [m for i, (r, s) in enumerate(zip(recorded, measured, strict=True))
                for m in compare(file, f"{field}[{i}]", r, s, rule)]  # fmt: skip
    leaf_rule = EXACT if isinstance(rule, Mapping) else rule
    return (
        []
        if leaf_rule.holds(recorded, measured)
        else [Mismatch(file, field, recorded, measured, leaf_rule)]
    )
