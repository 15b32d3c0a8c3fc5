"""MNIST and Fashion-MNIST: the original gzip IDX files, downloaded once, SHA-256 checked, read into tensors.

Files are stored as ROOT/mnist/<file> and ROOT/fashion_mnist/<file>. `FILES` is the table of what to fetch; tests
replace it with files of their own.

Where the SHA-256 hashes come from (two or three independent projects that publish the same values):

- MNIST: TensorFlow Datasets, tensorflow_datasets/url_checksums/mnist.txt (sizes 9,912,422 / 28,881 / 1,648,877 /
  4,542 bytes, same files on Google's cvdf mirror), and torchvision-ruby (ankane/torchvision-ruby,
  lib/torchvision/datasets/mnist.rb), which checks them against this same ossci-datasets mirror.
- Fashion-MNIST: TensorFlow Datasets, tensorflow_datasets/url_checksums/fashion_mnist.txt (sizes 26,421,880 /
  29,515 / 4,422,102 / 5,148 bytes, same URLs as here), Flux.jl (src/data/fashion-mnist.jl) and
  torchvision-ruby (lib/torchvision/datasets/fashion_mnist.rb).

The Fashion-MNIST server speaks plain http only; the SHA-256 check is what makes that safe.
"""

from dataclasses import dataclass
from pathlib import Path

import torch

from . import downloads

SPLITS = ("train", "test")

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class FileSpec:
    """One file to fetch: its name on disk, where to get it, and its SHA-256."""

    name: str
    url: str
    sha256: str


def _table(base_url: str, hashes: dict[str, str]) -> dict[str, FileSpec]:
    names = {
        "train_images": "train-images-idx3-ubyte.gz",
        "train_labels": "train-labels-idx1-ubyte.gz",
        "test_images": "t10k-images-idx3-ubyte.gz",
        "test_labels": "t10k-labels-idx1-ubyte.gz",
    }
    return {key: FileSpec(name, base_url + name, hashes[key]) for key, name in names.items()}


# FILES[dataset][f"{split}_{images|labels}"]
FILES: dict[str, dict[str, FileSpec]] = {
    "mnist": _table(
        MNIST_URL,
        {
            "train_images": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train_labels": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "test_images": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "test_labels": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
    "fashion_mnist": _table(
        FASHION_MNIST_URL,
        {
            "train_images": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train_labels": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "test_images": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "test_labels": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    ),
}


def _local_file(dataset: str, root, spec: FileSpec, download: bool, progress: bool, loader: str) -> Path:
    path = Path(root) / dataset / spec.name
    if download:
        return downloads.download(spec.url, path, spec.sha256, progress=progress)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; call {loader}(root, download=True) to fetch it from {spec.url} (SHA-256 checked)"
        )
    return path


def _load(
    dataset: str, root, split: str, download: bool, progress: bool, loader: str
) -> tuple[torch.Tensor, torch.Tensor]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    files = FILES[dataset]
    images_path = _local_file(dataset, root, files[f"{split}_images"], download, progress, loader)
    labels_path = _local_file(dataset, root, files[f"{split}_labels"], download, progress, loader)
    images = downloads.read_idx(images_path)
    labels = downloads.read_idx(labels_path)
    if images.ndim != 3 or images.dtype.name != "uint8":
        raise ValueError(f"{images_path}: expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected labels of shape (N,), got shape {labels.shape}")
    if len(labels) != len(images):
        raise ValueError(
            f"{labels_path} has {len(labels)} labels but {images_path} has {len(images)} images; expected equal counts"
        )
    x = torch.from_numpy(images).unsqueeze(1).float() / 127.5 - 1.0
    return x, torch.from_numpy(labels).long()


def load_mnist(
    root, split: str = "train", *, download: bool = True, progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST handwritten digits (60,000 train, 10,000 test), 28x28, scaled from 0..255 to [-1, 1] by x / 127.5 - 1.

    Args:
        root: directory for the data; files go to root/mnist/.
        split: "train" or "test".
        download: fetch missing or corrupted files (SHA-256 checked). If False, missing files raise FileNotFoundError.
        progress: show a progress bar of the bytes received while downloading.

    Returns:
        images: (N, 1, 28, 28) float32 in [-1, 1].
        labels: (N,) int64 digit classes 0..9.
    """
    return _load("mnist", root, split, download, progress, "load_mnist")


def load_fashion_mnist(
    root, split: str = "train", *, download: bool = True, progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST clothing images (60,000 train, 10,000 test), 28x28, scaled to [-1, 1] by x / 127.5 - 1.

    Args:
        root: directory for the data; files go to root/fashion_mnist/.
        split: "train" or "test".
        download: fetch missing or corrupted files (SHA-256 checked). If False, missing files raise FileNotFoundError.
        progress: show a progress bar of the bytes received while downloading.

    Returns:
        images: (N, 1, 28, 28) float32 in [-1, 1].
        labels: (N,) int64 classes 0..9, named by FASHION_MNIST_CLASSES.
    """
    return _load("fashion_mnist", root, split, download, progress, "load_fashion_mnist")
