"""The visualisation methods (``mv.vis``), one module per family."""
