"""Base utilities every stage uses: errors, files, console lines, hashes, locks, typed dataclasses, processes."""
