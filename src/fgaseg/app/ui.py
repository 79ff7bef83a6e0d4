"""The web demo: upload an image, type class names, get the overlay and a legend table."""

from __future__ import annotations

import html
import os
from typing import Any, Optional

from PIL import Image

from fgaseg.errors import ConfigError, FGASegError
from fgaseg.predict.api import DEFAULT_MAX_SIDE, predict
from fgaseg.predict.palette import make_palette
from fgaseg.predict.result import SegmentationResult

EXAMPLE_CLASSES = "cat, grass, sky, tree, road"
_HOW_TO = "Upload an image, list the classes to look for (comma-separated) and press Segment."

# analytics / version checks would phone home; the demo must work offline
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def require_gradio() -> Any:
    """Import gradio or fail with the install hint."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError:
        raise ConfigError("the web demo needs gradio: pip install 'fgaseg[demo]'") from None
    return gradio


def segment_for_app(segmenter: Any, image: Any, classes: str, opacity: float = 0.5,
                    sliding: bool = False, max_side: Optional[int] = DEFAULT_MAX_SIDE
                    ) -> tuple[Image.Image, str, SegmentationResult]:
    """(overlay with legend, legend as an HTML table, result) for one uploaded image.

    `image` is what gradio hands over (a file path, PIL image or array). Raises FGASegError
    subclasses with one-line messages for bad images or class lists.
    """
    if image is None:
        raise FGASegError("upload an image first")
    result = predict(segmenter, image, classes, sliding=sliding, max_side=max_side)
    return result.overlay(opacity=float(opacity)), legend_html(result), result


def legend_html(result: SegmentationResult) -> str:
    """An HTML table: colour swatch, class name (escaped), pixel share; present classes first."""
    colours = make_palette(len(result.class_names))
    share = result.pixel_share
    order = sorted(range(len(result.class_names)),
                   key=lambda i: -share[result.class_names[i]])
    rows = []
    for index in order:
        name = result.class_names[index]
        r, g, b = (int(c) for c in colours[index])
        rows.append(
            f'<tr class="fgaseg-legend-row"><td style="background: rgb({r},{g},{b}); '
            f'width: 1.5em"></td><td>{html.escape(name)}</td>'
            f'<td style="text-align: right">{share[name] * 100:.1f}%</td></tr>')
    return ('<table class="fgaseg-legend"><thead><tr><th></th><th>class</th>'
            '<th>pixels</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")


def build_app(segmenter: Any, *, title: str = "FGAseg open-vocabulary segmentation",
              description: str = "", default_classes: str = EXAMPLE_CLASSES,
              max_side: Optional[int] = DEFAULT_MAX_SIDE) -> Any:
    """A ``gradio.Blocks`` app around `segmenter` (anything following the Segmenter protocol)."""
    gr = require_gradio()

    def run(image: Any, classes: str, opacity: float, sliding: bool):
        try:
            overlay, table, _ = segment_for_app(segmenter, image, classes, opacity, sliding,
                                                max_side)
        except FGASegError as exc:
            raise gr.Error(str(exc), **_supported(gr.Error.__init__,
                                                  print_exception=False)) from None
        return overlay, table

    # gradio < 6 takes the theme here, gradio 6 in launch()
    theme = {"theme": _local_theme()} if _accepts(gr.Blocks.__init__, "theme") else {}
    with gr.Blocks(title=title, analytics_enabled=False, **theme) as demo:
        gr.Markdown(f"## {title}\n{description or _HOW_TO}")
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="filepath", image_mode=None, label="image",
                                 sources=["upload", "clipboard"], elem_id="fgaseg-input")
                classes = gr.Textbox(value=default_classes, label="classes (comma-separated)",
                                     placeholder=EXAMPLE_CLASSES, elem_id="fgaseg-classes")
                with gr.Row():
                    opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="overlay opacity")
                    sliding = gr.Checkbox(value=False, label="sliding window (slower)")
                button = gr.Button("Segment", variant="primary", elem_id="fgaseg-submit")
            with gr.Column():
                overlay = gr.Image(type="pil", format="png", label="overlay",
                                   interactive=False, elem_id="fgaseg-overlay")
                legend = gr.HTML(label="legend", elem_id="fgaseg-legend",
                                 **_supported(gr.HTML.__init__, js_on_load=None))
        button.click(run, inputs=[image, classes, opacity, sliding], outputs=[overlay, legend],
                     api_name="segment")
        classes.submit(run, inputs=[image, classes, opacity, sliding],
                       outputs=[overlay, legend])
    return demo


def launch(demo: Any, host: str = "127.0.0.1", port: int = 7860, *, block: bool = True,
           quiet: bool = False) -> Any:
    """Serve `demo` locally (no share link, no server-side rendering, no analytics)."""
    options = _supported(demo.launch, ssr_mode=False, theme=_local_theme(), footer_links=[],
                         mcp_server=False)  # newer gradio only
    return demo.launch(server_name=host, server_port=port, share=False,
                       prevent_thread_lock=not block, quiet=quiet, show_error=True, **options)


def _local_theme() -> Any:
    """The default look with system fonts only (no request to a font CDN)."""
    gr = require_gradio()
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def _accepts(function: Any, name: str) -> bool:
    import inspect

    return name in inspect.signature(function).parameters


def _supported(function: Any, **options: Any) -> dict[str, Any]:
    """The subset of keyword `options` that `function` accepts (gradio 4-6 differ)."""
    import inspect

    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return options
    return {name: value for name, value in options.items() if name in parameters}
