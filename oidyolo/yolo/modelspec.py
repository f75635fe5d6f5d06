"""What inference needs beside a weights file: variant, classes, anchors, input size (``model.json``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from oidyolo.errors import DataFormatError

SPEC_NAME = "model.json"


@dataclass(frozen=True)
class ModelSpec:
    variant: str
    classes: tuple[str, ...]
    anchors: tuple[tuple[float, float], ...]
    input_size: tuple[int, int]  # (height, width)
    # Anchor indices per output, stride 32 first; None = the variant's standard masks (a darknet cfg may differ).
    masks: tuple[tuple[int, ...], ...] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def anchor_array(self) -> np.ndarray:
        return np.asarray(self.anchors, dtype=np.float32)

    @property
    def mask_list(self) -> list[list[int]]:
        from oidyolo.yolo.anchor_masks import masks_for

        return [list(m) for m in self.masks] if self.masks is not None else masks_for(self.variant)

    def save(self, path: str | Path) -> None:
        data = {k: v for k, v in asdict(self).items() if not (k == "masks" and v is None)}
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> ModelSpec:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(
                variant=data["variant"],
                classes=tuple(data["classes"]),
                anchors=tuple(tuple(float(v) for v in a) for a in data["anchors"]),
                input_size=tuple(int(v) for v in data["input_size"]),  # type: ignore[arg-type]
                masks=tuple(tuple(int(i) for i in m) for m in data["masks"]) if data.get("masks") else None,
            )
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataFormatError(f"{path}: not a model spec ({err})") from None

    @classmethod
    def beside(cls, weights: str | Path) -> ModelSpec:
        """The spec saved next to a weights file by training."""
        path = Path(weights).with_name(SPEC_NAME)
        if not path.is_file():
            raise DataFormatError(f"{weights}: no {SPEC_NAME} beside it (training writes one next to the weights)")
        return cls.load(path)


def load_body(weights: str | Path, spec: ModelSpec | None = None):
    """Build the body the spec describes and load ``weights`` into it."""
    from oidyolo.yolo.model import build_yolov3

    spec = spec or ModelSpec.beside(weights)
    body = build_yolov3(spec.num_classes, spec.variant, weight_decay=0.0)
    try:
        body.load_weights(str(weights))
    except (ValueError, OSError) as err:
        raise DataFormatError(
            f"{weights}: does not fit a {spec.variant} body with {spec.num_classes} classes ({err})"
        ) from None
    return body, spec
