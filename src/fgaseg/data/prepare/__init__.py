"""Scripts that turn the official downloads into the layouts of :mod:`fgaseg.data.benchmarks`.

Run ``python -m fgaseg.data.prepare.<name> ROOT`` with ``<name>`` one of ``coco_stuff``,
``ade20k_150``, ``ade20k_847``, ``pascal_context_59``, ``pascal_context_459``, ``voc``, or
``toy_shapes`` (a small random-shapes dataset in the generic folder format). Each shows a
progress bar and, if stopped, resumes by skipping outputs that already exist (outputs are
written to a temporary name and renamed, so a partial file is never mistaken for a finished one).
See docs/datasets.md.
"""
