"""The names of the metric protocols: how ODS / OIS / AP are computed (``crackseg.evaluation.metrics``)."""

from typing import Literal, get_args

#: ``crackclip``: the CrackCLIP authors' evaluation code; ``paper``: the formulas as the paper writes them
MetricProtocol = Literal["crackclip", "paper"]

#: every protocol; the first is the default
PROTOCOLS: tuple[str, ...] = get_args(MetricProtocol)
