"""crackseg built-in plugin (work in progress)."""
