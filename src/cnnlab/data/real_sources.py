"""Sources of the real signal, text and speech datasets: CWRU bearings, MR sentences, FSDD.

Each file's SHA-256 comes from a checksum list shipped with the package
(``cnnlab/data/checksums/<name>.sha256``, ``sha256sum`` format), so a local copy (for
example ``../shared/data/<name>/`` named in ``$CNNLAB_DATA_DIRS``) and a download are
verified alike. A file's URL is a base URL plus its relative name.
"""

from __future__ import annotations

from importlib import resources

from cnnlab.data.sources import DatasetSource, RemoteFile

# The 10-class 0-HP (1797 rpm) drive-end task at 12 kHz: normal, then ball (B), inner
# race (IR) and outer race at 6:00 (OR@6) faults of 7, 14 and 21 mil.
CWRU_FILES: dict[str, str] = {
    "normal": "1797_Normal.npz",
    "ball_007": "1797_B_7_DE12.npz",
    "ball_014": "1797_B_14_DE12.npz",
    "ball_021": "1797_B_21_DE12.npz",
    "inner_007": "1797_IR_7_DE12.npz",
    "inner_014": "1797_IR_14_DE12.npz",
    "inner_021": "1797_IR_21_DE12.npz",
    "outer_007": "1797_OR@6_7_DE12.npz",
    "outer_014": "1797_OR@6_14_DE12.npz",
    "outer_021": "1797_OR@6_21_DE12.npz",
}
# The same recordings as CWRU's own .mat files (the Bearing Data Center's file numbers),
# for users who downloaded those: `load("cwru", path=<folder of .mat files>)`.
CWRU_MAT_NUMBERS: dict[str, int] = {
    "normal": 97,
    "ball_007": 118,
    "ball_014": 185,
    "ball_021": 222,
    "inner_007": 105,
    "inner_014": 169,
    "inner_021": 209,
    "outer_007": 130,
    "outer_014": 197,
    "outer_021": 234,
}

FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


def _checksums(name: str) -> dict[str, str]:
    """Relative file name -> SHA-256 hex, from the packaged ``<name>.sha256`` list."""
    text = resources.files("cnnlab.data").joinpath(f"checksums/{name}.sha256").read_text()
    pairs = (line.split(maxsplit=1) for line in text.splitlines() if line.strip())
    return {path.strip().removeprefix("*"): digest for digest, path in pairs}


def _files(name: str, wanted: list[str] | None = None) -> tuple[RemoteFile, ...]:
    sums = _checksums(name)
    names = wanted if wanted is not None else sorted(sums)
    return tuple(RemoteFile(name=n, digests=(f"sha256:{sums[n]}",)) for n in names)


CWRU = DatasetSource(
    name="cwru",
    title="CWRU bearing vibration, 0 HP drive end, 12 kHz, 10 classes",
    homepage="https://engineering.case.edu/bearingdatacenter",
    # The NumPy conversion of CWRU's .mat files (srigas/CWRU_Bearing_NumPy), the copy whose
    # checksums we ship; its folder layout was not reachable from here to check, so a
    # failed download names this URL and `--mirror` can replace it.
    urls=("https://raw.githubusercontent.com/srigas/CWRU_Bearing_NumPy/main/Data/1797/",),
    files=_files("cwru", list(CWRU_FILES.values())),
    classes=tuple(CWRU_FILES),
    input_shape=(1, 2048),
    train_size=3094,  # windows of 2,048 at the default strides (256 train, 2,048 test)
    test_size=161,
)

MR = DatasetSource(
    name="mr",
    title="MR: movie-review sentence polarity v1.0 (Pang & Lee 2005)",
    homepage="https://www.cs.cornell.edu/people/pabo/movie-review-data/",
    # Cornell ships the two files in rt-polaritydata.tar.gz; Kim's repository holds the
    # same two files (the checksums match the tarball's), fetchable one by one.
    urls=("https://raw.githubusercontent.com/yoonkim/CNN_sentence/master/",),
    files=_files("mr"),
    classes=("negative", "positive"),
    input_shape=(56,),
    train_size=9595,  # fold 0 of 10-fold cross-validation (the first two folds hold 1,067)
    test_size=1067,
)

FSDD = DatasetSource(
    name="fsdd",
    title="Free Spoken Digit Dataset v1.0.10 (Jackson et al.): 3,000 WAVs, 6 speakers",
    homepage="https://github.com/Jakobovski/free-spoken-digit-dataset",
    urls=("https://raw.githubusercontent.com/Jakobovski/free-spoken-digit-dataset/v1.0.10/",),
    files=_files("fsdd"),
    classes=tuple(str(d) for d in range(10)),
    input_shape=(1, 8000),
    train_size=2700,  # the official split: recordings 0-4 of each digit and speaker test
    test_size=300,
)

REAL_SOURCES: dict[str, DatasetSource] = {s.name: s for s in (CWRU, MR, FSDD)}
