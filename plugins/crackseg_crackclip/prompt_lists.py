"""The state lists of CrackCLIP's prompt sets (verbatim from the authors' ``prompt_ensemble.py``).

``crack`` = ``encode_crack_text_with_prompt_ensemble`` (used by the authors' test.py):
8 normal and 14 crack states. ``generic`` = ``encode_text_with_prompt_ensemble``
(APRIL-GAN's lists, used by the authors' train.py; the "Normal" arm of the
paper's Figure 5): 7 normal and 5 crack states. Both use the 35 WinCLIP templates.
"""

from __future__ import annotations

CRACK_NORMAL: tuple[str, ...] = (
    "{}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
    "smooth {}",
)

CRACK_CRACK: tuple[str, ...] = (
    "damaged {}",
    "broken {}",
    "{} with crack",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
    "{} with dark curve",
    "{} with black line",
    "{} with narrow break and opening",
    "thin and long {}",
    "discontinuous, disjunction {}",
    "{} with small area",
    "vertical, horizontal or intersecting {}",
    "fissure, tear, crevice, break, {}",
)

GENERIC_NORMAL: tuple[str, ...] = CRACK_NORMAL[:7]

GENERIC_CRACK: tuple[str, ...] = (
    "damaged {}",
    "broken {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
)
