"""``python -m crackseg`` (also what ``torchrun -m crackseg`` runs)."""

from .cli import main

main()
