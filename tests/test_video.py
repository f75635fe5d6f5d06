"""`detect` on a video: an annotated video plus one JSON line per frame, equal to `detect` on the same frames."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from real_weights import darknet_tiny_files, real_photos

cv2 = pytest.importorskip("cv2")
pytest.importorskip("tensorflow")

from oidyolo.yolo.predict import detect, load_detector  # noqa: E402

pytestmark = pytest.mark.slow
FRAMES = 6


def _write_video(path: Path) -> tuple[int, int]:
    """A short MJPG .avi: the real photo panning right by 12 pixels a frame."""
    (photo,) = real_photos()
    image = cv2.imread(str(photo))
    h, w = image.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    assert writer.isOpened()
    for k in range(FRAMES):
        writer.write(np.roll(image, 12 * k, axis=1))
    writer.release()
    return w, h


def _frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def test_detect_on_a_video_writes_an_annotated_video_and_json_lines(tmp_path) -> None:
    weights = darknet_tiny_files()["yolov3-tiny.weights"]
    video = tmp_path / "pan.avi"
    w, h = _write_video(video)
    env = {**os.environ, "OIDYOLO_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "oidyolo", "detect", str(video), "--weights", str(weights), "--out",
         str(tmp_path / "out"), "--score", "0.2"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"video pan.avi: {FRAMES}/{FRAMES} (100.0%)" in proc.stderr  # the progress line
    lines = [json.loads(line) for line in (tmp_path / "out" / "pan.detections.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(FRAMES))
    assert all((r["width"], r["height"]) == (w, h) for r in lines)

    # The oracle: the frames as OpenCV decodes them, saved losslessly and run through image `detect`.
    decoded = _frames(video)
    assert len(decoded) == FRAMES
    pngs = []
    for k, frame in enumerate(decoded):
        pngs.append(str(tmp_path / f"f{k}.png"))
        cv2.imwrite(pngs[-1], frame)
    os.environ["OIDYOLO_CACHE"] = str(tmp_path / "cache")
    try:
        body, spec = load_detector(weights)
    finally:
        del os.environ["OIDYOLO_CACHE"]
    for row, dets in zip(lines, detect(body, spec, pngs, score_threshold=0.2), strict=True):
        ours = row["detections"]
        assert len(ours) == len(dets.scores) >= 1
        for d, box, score, cls in zip(ours, dets.boxes, dets.scores, dets.classes, strict=True):
            assert d["class_id"] == int(cls) and abs(d["score"] - score) < 1e-3
            np.testing.assert_allclose(d["box"], box, atol=0.2)
    # The tie moves right with the pan.
    ties = [max((d for d in r["detections"] if d["class"] == "tie"), key=lambda d: d["score"]) for r in lines]
    assert ties[-1]["box"][0] > ties[0]["box"][0] + 30

    annotated = _frames(tmp_path / "out" / "pan.detections.avi")
    assert len(annotated) == FRAMES and annotated[0].shape == decoded[0].shape
    assert np.abs(annotated[0].astype(int) - decoded[0]).max() > 100  # boxes are drawn


def test_a_file_opencv_cannot_read_is_refused_and_writes_nothing(tmp_path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    weights = darknet_tiny_files()["yolov3-tiny.weights"]
    env = {**os.environ, "OIDYOLO_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "oidyolo", "detect", str(bad), "--weights", str(weights), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 2 and "broken.mp4" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not list((tmp_path / "o").iterdir())
