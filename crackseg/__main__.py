"""``python -m crackseg`` (also what ``torchrun -m crackseg`` runs)."""

from crackseg.cli import main

main()
