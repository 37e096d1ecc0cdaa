"""Classifiers of torchvision and timm by name: ``torchvision:resnet18``, ``timm:vit_tiny_patch16_224``.

The class count comes from the dataset and the weights start fresh (pretrained weights arrive
through ``smu import``: smu never downloads). Input size: convolutional networks (adaptive pooling)
take the dataset's images as they are; a model with a fixed input size (a ViT's position
embeddings, a Swin's windows) is built for the dataset's image size where the library allows it,
and an ``@SIZE`` suffix (``torchvision:vit_b_16@224``) builds it at SIZE and resizes the images
inside the model (what pretrained weights need). The networks take three channels, as their
pretrained weights do: the model repeats grey images to RGB.
timm is the extra ``smu[timm]``; this module is the only one that imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from smu.core.errors import UsageError, shown
from smu.core.registry import suggest

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Library:
    names: Callable[[], list[str]]
    build: Callable[[str, int, int], nn.Module]
    """``build(name, image_size, num_classes)``: a network for three-channel images of that side."""
    statistics: Callable[[str], tuple[tuple[float, ...], tuple[float, ...]]]
    """The normalisation its pretrained weights were trained with."""


def torchvision_names() -> list[str]:
    from torchvision import models

    return sorted(models.list_models(module=models))  # classification models only, no detection


def torchvision_build(name: str, image_size: int, num_classes: int) -> nn.Module:
    from torchvision import models

    builder = models.get_model_builder(name)
    kwargs = {"weights": None, "num_classes": num_classes}
    # A ViT sizes its position embeddings by image_size; torchvision's other classifiers take any size.
    if builder.__module__ == "torchvision.models.vision_transformer":
        kwargs["image_size"] = image_size
    try:
        return builder(**kwargs)
    except (ValueError, AssertionError, RuntimeError) as e:
        raise UsageError(
            f"torchvision:{name} cannot be built for {image_size}x{image_size} images: "
            f"{str(e).splitlines()[0]}",
            hint=f"build it at its own size and resize inside the model: torchvision:{name}@224",
        ) from None


def torchvision_statistics(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return IMAGENET_MEAN, IMAGENET_STD  # every torchvision classification weight uses ImageNet's


def timm_module():
    try:
        import timm
    except ImportError:
        raise UsageError("timm: architectures need the timm extra", hint="pip install 'smu[timm]'") from None
    return timm


def timm_names() -> list[str]:
    return timm_module().list_models()


def timm_build(name: str, image_size: int, num_classes: int) -> nn.Module:
    timm = timm_module()
    kwargs = {"pretrained": False, "num_classes": num_classes}
    if timm.get_pretrained_cfg(name) and timm.get_pretrained_cfg(name).fixed_input_size:
        kwargs["img_size"] = image_size  # ViT, Swin, ...: sized by the image; CNNs take any size
    try:
        return timm.create_model(name, **kwargs)
    except (ValueError, AssertionError, RuntimeError, TypeError) as e:
        raise UsageError(
            f"timm:{name} cannot be built for {image_size}x{image_size} images: {str(e).splitlines()[0]}",
            hint=f"build it at its own size and resize inside the model: timm:{name}@224",
        ) from None


def timm_statistics(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    cfg = timm_module().get_pretrained_cfg(name)
    return (tuple(cfg.mean), tuple(cfg.std)) if cfg else (IMAGENET_MEAN, IMAGENET_STD)


LIBRARIES = {
    "torchvision": Library(torchvision_names, torchvision_build, torchvision_statistics),
    "timm": Library(timm_names, timm_build, timm_statistics),
}


LISTING = {"torchvision": "torchvision.models.list_models()", "timm": "timm.list_models()"}


def check_name(library: str, name: str) -> Library:
    """The library, after checking it has a classifier called ``name`` (a did-you-mean from its own list)."""
    lib = LIBRARIES[library]
    names = lib.names()
    if name not in names:
        close = suggest(name, names)
        raise UsageError(
            f"{library} has no classification model {shown(name)}"
            + (f" (did you mean {close!r}?)" if close else ""),
            hint=f"{LISTING[library]} lists them",
        )
    return lib
