"""One module per studio tab; each `build(studio, project)` places its components and
returns what to refresh when the open project changes."""
