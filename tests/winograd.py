"""Switch the CPU convolution's Winograd rule (``functional.conv._is_winograd``) for a test."""

from minivis.functional import conv as conv_module


def force_winograd(monkeypatch, on: bool) -> None:
    """``on``: every stride-1 3x3 convolution takes Winograd, however small; else none does."""
    monkeypatch.setattr(conv_module, "WINOGRAD_MIN_CHANNELS", 1 if on else 1 << 30)
    monkeypatch.setattr(conv_module, "WINOGRAD_MIN_BLOCKS", 1)
    monkeypatch.setattr(conv_module, "WINOGRAD_MIN_SIZE", 1)
