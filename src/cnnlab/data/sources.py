"""Table of the known datasets: files, official URLs, published checksums and class names."""

from __future__ import annotations

from dataclasses import dataclass

# Where Debian-style packages install datasets: `<root>/<dataset name>/`.
# `dataset-fashion-mnist` installs /usr/share/datasets/fashion-mnist/.
DEFAULT_SYSTEM_DIRS: tuple[str, ...] = ("/usr/share/datasets", "/usr/local/share/datasets")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset, with every digest it may legitimately have.

    A file is accepted when its own digest matches one of ``digests`` or, for a
    ``.gz`` file, when its gunzipped bytes match one of ``content_digests``. The
    second rule exists because Debian re-compresses Fashion-MNIST: the ``.gz``
    bytes differ from Zalando's, the images inside are the same.
    """

    name: str  # file name on the server and in the cache folder
    digests: tuple[str, ...]  # "md5:<hex>" or "sha256:<hex>"; any one matches
    content_digests: tuple[str, ...] = ()  # digests of the gunzipped bytes
    size: int | None = None  # exact byte size, where the file has one published form
    raw_size: int | None = None  # gunzipped size; checked cheaply from the gzip trailer


@dataclass(frozen=True)
class DatasetSource:
    """A dataset cnnlab knows how to find, download, verify and read."""

    name: str
    title: str
    homepage: str
    urls: tuple[str, ...]  # base URLs tried in order; a file's URL is base + file name
    files: tuple[RemoteFile, ...]
    classes: tuple[str, ...]
    input_shape: tuple[int, ...]  # (C, H, W) of an image, (C, L) of a signal, (L,) of tokens
    train_size: int
    test_size: int
    apt_package: str | None = None


def _idx_files(
    md5_gz: tuple[str, str, str, str],
    md5_raw: tuple[str, str, str, str],
    extra: tuple[str, str, str, str] | None = None,
) -> tuple[RemoteFile, ...]:
    """The four IDX files of an MNIST-format dataset, in download order."""
    names = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    # 16-byte header + 28*28 bytes per image; 8-byte header + 1 byte per label.
    raw_sizes = (16 + 60000 * 784, 8 + 60000, 16 + 10000 * 784, 8 + 10000)
    return tuple(
        RemoteFile(
            name=names[i],
            digests=(f"md5:{md5_gz[i]}",) + ((f"sha256:{extra[i]}",) if extra else ()),
            content_digests=(f"md5:{md5_raw[i]}",),
            raw_size=raw_sizes[i],
        )
        for i in range(4)
    )


FASHION_MNIST = DatasetSource(
    name="fashion-mnist",
    title="Fashion-MNIST (Zalando)",
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    files=_idx_files(
        # The .gz MD5s published in Zalando's README (also torchvision's mnist.py).
        md5_gz=(
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
        # MD5s of the uncompressed IDX files, as published alongside (e.g. in
        # dataset loaders that verify after gunzip); Debian's copy matches them.
        md5_raw=(
            "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "9018921c3c673c538a1fc5bad174d6f9",
            "8181f5470baa50b63fa0f6fddb340f0a",
            "15d484375f8d13e6eb1aabb0c3f46965",
        ),
        # SHA-256 of the .gz files of Debian's dataset-fashion-mnist
        # 0.0~git20200523.55506a9-1 (re-compressed, so their MD5s differ from Zalando's).
        extra=(
            "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
            "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
            "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
            "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
        ),
    ),
    classes=(
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
    ),
    input_shape=(1, 28, 28),
    train_size=60000,
    test_size=10000,
    apt_package="dataset-fashion-mnist",
)

MNIST = DatasetSource(
    name="mnist",
    title="MNIST handwritten digits (LeCun, Cortes, Burges)",
    homepage="http://yann.lecun.com/exdb/mnist/",
    # torchvision's mirror first (the original site often refuses scripts), then the original.
    urls=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    files=_idx_files(
        md5_gz=(
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
        md5_raw=(
            "6bbc9ace898e44ae57da46a324031adb",
            "a25bea736e30d166cdddb491f175f624",
            "2646ac647ad5339dbf082846283269ea",
            "27ae3e4e09519cfbb04c329615203637",
        ),
    ),
    classes=tuple(str(d) for d in range(10)),
    input_shape=(1, 28, 28),
    train_size=60000,
    test_size=10000,
)

CIFAR10 = DatasetSource(
    name="cifar10",
    title="CIFAR-10, binary version (Krizhevsky)",
    homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    urls=("https://www.cs.toronto.edu/~kriz/",),
    files=(
        RemoteFile(
            name="cifar-10-binary.tar.gz",
            digests=(
                "md5:c32a1d4ab5d03f1284b67883e8d87530",
                "sha256:c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
            ),
            size=170052171,
        ),
    ),
    classes=(
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ),
    input_shape=(3, 32, 32),
    train_size=50000,
    test_size=10000,
)

CIFAR100_FINE = (
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
)

CIFAR100_COARSE = (
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
)

CIFAR100 = DatasetSource(
    name="cifar100",
    title="CIFAR-100, binary version (Krizhevsky), fine labels",
    homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    urls=("https://www.cs.toronto.edu/~kriz/",),
    files=(
        RemoteFile(
            name="cifar-100-binary.tar.gz",
            digests=("md5:03b5dce01913d631647c71ecec9e9cb8",),
            size=168513733,
        ),
    ),
    classes=CIFAR100_FINE,
    input_shape=(3, 32, 32),
    train_size=50000,
    test_size=10000,
)

SOURCES: dict[str, DatasetSource] = {s.name: s for s in (FASHION_MNIST, MNIST, CIFAR10, CIFAR100)}

# Datasets that need no download: name -> (title, where the data comes from).
LOCAL_KINDS: dict[str, tuple[str, str]] = {
    "digits": ("scikit-learn 8x8 handwritten digits", "sklearn.datasets.load_digits (bundled)"),
    "folder": ("images in one sub-folder per class", "option path=<folder>"),
    "npz": ("arrays x_train, y_train, x_test, y_test in an .npz file", "option path=<file>"),
}
