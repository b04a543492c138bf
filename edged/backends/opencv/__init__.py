"""OpenCV dnn backend: serves Caffe models on the CPU, where TensorRT's parsers are absent."""
