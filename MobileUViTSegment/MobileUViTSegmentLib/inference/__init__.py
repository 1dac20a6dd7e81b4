"""Inference: from an image file or array to a label map on the input grid."""
