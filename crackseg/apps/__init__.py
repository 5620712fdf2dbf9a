"""What the commands do: run, tune, compare, report, measure, export, new-plugin."""
