"""ImageNet class names: the shipped file, spot checks, and (when a torchvision wheel is on disk)
equality with torchvision's list read from the wheel without installing it."""

from __future__ import annotations

import ast
import glob
import zipfile

import pytest

from minivis import data


def test_imagenet_labels():
    labels = data.imagenet_labels()
    assert isinstance(labels, list) and len(labels) == 1000
    assert all(isinstance(n, str) and n and n == n.strip() for n in labels)
    assert labels[0] == "tench" and labels[999] == "toilet tissue"
    assert labels[281] == "tabby" and labels[285] == "Egyptian cat" and labels[967] == "espresso"
    assert len(set(labels)) == 1000
    labels.append("mutated")  # a fresh list each call: callers cannot corrupt the shared names
    assert len(data.imagenet_labels()) == 1000


WHEELS = sorted(glob.glob("/opt/**/torchvision-*.whl", recursive=True))


@pytest.mark.skipif(not WHEELS, reason="no torchvision wheel on disk to compare with")
def test_imagenet_labels_match_torchvision_wheel():
    with zipfile.ZipFile(WHEELS[-1]) as wheel:
        tree = ast.parse(wheel.read("torchvision/models/_meta.py"))
    categories = next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                      and getattr(node.targets[0], "id", None) == "_IMAGENET_CATEGORIES")
    assert data.imagenet_labels() == categories
