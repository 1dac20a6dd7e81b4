"""MobileUViTSegment core: models, inference, training and command line; never imports slicer or Qt."""
