"""crackseg's training-free ridge labeler (see filters.py)."""
