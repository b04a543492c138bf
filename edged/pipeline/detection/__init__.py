"""Detection post-processing: output decoding, class-aware NMS, letterbox undo."""
