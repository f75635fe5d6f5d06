"""A deterministic demo source laid out exactly like Open Images, for machines that cannot reach the real one.

``generate_demo(out_dir, spec)`` writes

* ``out_dir/openimages/<relpath>``: the class descriptions, the hierarchy and one bbox CSV per split, at the relative
  paths of :func:`oidyolo.data.versions.version_files` (the metadata base URL of the real dataset), and
* ``out_dir/open-images-dataset/<split>/<ImageID>.jpg``: the images (the public bucket's key layout).

Images show procedurally drawn apples, oranges and bananas (plus a few lemons, strawberries, balls and coffee cups) on
varied backgrounds. Each box is the pixel extent of the object's drawn mask, so a detector can learn them exactly. The
attribute columns follow Open Images' conventions: full-extent boxes, ``IsOccluded`` when more than 15 % of the object
is hidden by objects drawn later, ``IsTruncated`` (box clipped at the border), ``IsGroupOf`` (one box over a cluster
of 5+ same-class objects and no individual boxes), ``IsDepiction`` (flat cartoon drawing) and ``-1`` for unknown.

Every image is drawn from its own ``numpy.random.default_rng((seed, split, index))`` stream, so the output is
byte-identical for a given spec whatever the generation order. Only numpy, Pillow and the stdlib are used (no
TensorFlow), so data rules stay light.

Modules: ``spec`` (classes, columns, the spec, the image plan), ``shapes`` (the drawn objects), ``backgrounds``,
``scene`` (canvas, placement, one rendered image) and ``layout`` (writing the files).
"""

from oidyolo.data.demo.layout import box_rows, class_mids, generate_demo
from oidyolo.data.demo.scene import OCCLUDED_FRACTION, DemoObject, RenderedImage, render_image
from oidyolo.data.demo.spec import (
    ALL_CLASSES,
    BOX_COLUMNS,
    DISTRACTORS,
    EXTRA_FRUIT,
    IMAGES_DIR,
    METADATA_DIR,
    TARGET_CLASSES,
    XCLICK_COLUMNS,
    DemoSpec,
    DemoSummary,
    ImagePlan,
    SplitSummary,
    plan_images,
)

__all__ = [
    "ALL_CLASSES",
    "BOX_COLUMNS",
    "DISTRACTORS",
    "EXTRA_FRUIT",
    "IMAGES_DIR",
    "METADATA_DIR",
    "OCCLUDED_FRACTION",
    "TARGET_CLASSES",
    "XCLICK_COLUMNS",
    "DemoObject",
    "DemoSpec",
    "DemoSummary",
    "ImagePlan",
    "RenderedImage",
    "SplitSummary",
    "box_rows",
    "class_mids",
    "generate_demo",
    "plan_images",
    "render_image",
]
