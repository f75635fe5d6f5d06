"""The data wing: Open Images metadata, selection, downloads, VOC and keras-yolo3 files. Never imports TensorFlow."""
