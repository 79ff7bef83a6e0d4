"""Export a segmenter with a fixed class list to ONNX (``pip install 'fgaseg[onnx]'``)."""

from fgaseg.export.onnx_export import (ExportReport, FixedClassSegmenter,
                                       compare_with_onnxruntime, export_onnx)

__all__ = ["export_onnx", "compare_with_onnxruntime", "FixedClassSegmenter", "ExportReport"]
