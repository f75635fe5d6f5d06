"""The training wing: YOLOv3 / YOLOv3-tiny in Keras 3 on TensorFlow. Reads keras-yolo3 annotation files only."""
