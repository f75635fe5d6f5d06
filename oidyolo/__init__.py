"""oidyolo: from Google Open Images to a trained Keras YOLOv3 detector.

Two wings meet only through files on disk: :mod:`oidyolo.data` (never imports TensorFlow) builds the
dataset and the keras-yolo3 annotation files; :mod:`oidyolo.yolo` trains and evaluates on them.
"""

__version__ = "0.1.0"
