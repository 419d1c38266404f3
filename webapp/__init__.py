"""The HierTune studio: a Gradio UI over `hiercore` (see `webapp.app`)."""
