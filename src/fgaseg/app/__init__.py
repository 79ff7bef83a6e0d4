"""Gradio web demo (optional extra: ``pip install 'fgaseg[demo]'``).

``build_app(segmenter)`` returns a ``gradio.Blocks``; ``segment_for_app`` is the gradio-free
function behind it. Importing this package does not import gradio.
"""

from fgaseg.app.ui import build_app, legend_html, require_gradio, segment_for_app

__all__ = ["build_app", "legend_html", "require_gradio", "segment_for_app"]
