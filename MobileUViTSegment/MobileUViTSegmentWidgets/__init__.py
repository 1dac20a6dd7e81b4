"""The panel's Qt sections beyond Segment: review (uncertainty, measurements, comparison) and model improvement.

They need Slicer's Qt, so they are imported by the Widget's ``setup`` only (never by the Logic or the tests' harness)
and hold no behaviour of their own: every decision is a function of ``MobileUViTSegmentSlicer``, tested headless
against real MRML nodes; what is left here (filling tables, file dialogs, wiring clicks) is checked statically.
"""
