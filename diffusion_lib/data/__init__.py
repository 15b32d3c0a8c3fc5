"""Data for the book: offline 2-D toys, digits, captioned shapes and emoji; checked downloaders for MNIST,
Fashion-MNIST and CIFAR-10."""

from .cifar import CIFAR10_CLASSES, load_cifar10, read_cifar_batch
from .digits import load_digits
from .downloads import download, read_idx
from .emoji import EmojiSet, load_emoji
from .mnist import FASHION_MNIST_CLASSES, FileSpec, load_fashion_mnist, load_mnist
from .shapes import CaptionedShapes, captioned_shapes
from .toys import TOY_2D_NAMES, eight_gaussians, swiss_roll, toy_2d, two_moons

__all__ = [
    "CIFAR10_CLASSES",
    "FASHION_MNIST_CLASSES",
    "TOY_2D_NAMES",
    "CaptionedShapes",
    "EmojiSet",
    "FileSpec",
    "captioned_shapes",
    "download",
    "eight_gaussians",
    "load_cifar10",
    "load_digits",
    "load_emoji",
    "load_fashion_mnist",
    "load_mnist",
    "read_cifar_batch",
    "read_idx",
    "swiss_roll",
    "toy_2d",
    "two_moons",
]
