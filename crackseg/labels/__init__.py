"""Phase 1: the labeler contract and writing a split's pseudo-labels (cached by content)."""
