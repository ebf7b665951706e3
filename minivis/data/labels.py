"""ImageNet-1k class names, shipped with the package (imagenet_classes.txt, one per line, index order;
extracted once from torchvision's ``_IMAGENET_CATEGORIES``: see README.md)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

IMAGENET_CLASSES_FILE = Path(__file__).with_name("imagenet_classes.txt")


@lru_cache(maxsize=1)
def _imagenet_labels() -> tuple[str, ...]:
    names = tuple(IMAGENET_CLASSES_FILE.read_text(encoding="utf-8").splitlines())
    if len(names) != 1000:
        raise ValueError(f"imagenet_labels: {str(IMAGENET_CLASSES_FILE)!r} must hold 1000 names, "
                         f"got {len(names)}")
    return names


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names in index order (e.g. 281 'tabby', 285 'Egyptian cat', 967 'espresso')."""
    return list(_imagenet_labels())
