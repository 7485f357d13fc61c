"""Detection annotations: COCO JSON, Pascal VOC XML and YOLO txt, read into one form and back.

Every reader returns ``ImageBoxes`` records and the class names; every writer takes them.
Boxes are float32 (n, 4) x0, y0, x1, y1 pixels, 0-based, x1 and y1 exclusive (the convention
of ``cnnlab.data.scenes``): a box over pixel columns 0..9 has x0 = 0, x1 = 10. Each format's
own coordinates and flags are described in its module (``coco``, ``voc``, ``yolo``).

Decisions:
- Validation on read. NaN or infinite coordinates, x1 < x0 or y1 < y0, a box more than
  ``EDGE_TOLERANCE`` (1 pixel) outside the image, an unknown class id, category id or class
  name, an annotation naming a missing image, and a malformed file raise DataFormatError
  naming the file, the entry and what was expected. Boxes within the tolerance are clipped
  to the image: 0-based VOC writers (xmin = 0) and outward rounding put edges one pixel out.
- Degenerate boxes (zero width or height, after clipping) are dropped, not errors: they hold
  no pixels, and labelling tools write them for clicks that never became a box. Each record
  counts them in ``dropped``, and each read warns once with the total.
- Crowd and difficult. COCO ``iscrowd`` boxes are kept and flagged in ``ImageBoxes.crowd``
  (evaluation ignores them; a trainer may drop them); VOC ``difficult`` in
  ``ImageBoxes.difficult``.
- Writing. Each file is written atomically (``cnnlab.core.io``) after every record has been
  checked, so a failure leaves no half-written file (a set of files is not one transaction).
"""

from cnnlab.data.annotations.coco import read_coco, write_coco
from cnnlab.data.annotations.common import EDGE_TOLERANCE, Categories, ImageBoxes, PathLike
from cnnlab.data.annotations.folder import FORMATS, DetectionFolder, load_detection_folder
from cnnlab.data.annotations.voc import read_voc, write_voc
from cnnlab.data.annotations.yolo import YOLO_CLASSES_FILE, read_yolo, write_yolo

__all__ = [
    "EDGE_TOLERANCE",
    "FORMATS",
    "YOLO_CLASSES_FILE",
    "Categories",
    "DetectionFolder",
    "ImageBoxes",
    "PathLike",
    "load_detection_folder",
    "read_coco",
    "read_voc",
    "read_yolo",
    "write_coco",
    "write_voc",
    "write_yolo",
]
