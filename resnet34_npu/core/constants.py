"""Every constant of the pipeline in one place.

Pipeline, in words: an image is read with Pillow, turned upright from its EXIF orientation and
converted to 8-bit RGB (transparency composited over white); its short side is resized to 256
pixels (bilinear, antialiased), the centre 224 x 224 pixels are cropped, values are scaled to
[0, 1] and normalised with the ImageNet mean and standard deviation below. The resulting
[N, 3, 224, 224] float32 batch goes through torchvision's ResNet34, whose 1000 logits are turned
into probabilities with a softmax computed in float64.
"""

from __future__ import annotations

from pathlib import Path

#: The suite's version (the package's, and the ``suite_version`` in every document it writes).
__version__ = "0.1.0"

RESIZE_SIZE = 256
CROP_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_CLASSES = 1000

#: torchvision's ResNet34 has exactly this many parameters (the model card says so too).
RESNET34_PARAMETERS = 21_797_672
#: Multiply-accumulates of one 224 x 224 forward pass (torchvision's metadata: 3.66 GFLOPs,
#: counted as MACs).
RESNET34_GMACS = 3.664

#: The model card's weights: ``torch.manual_seed(42)`` then a fresh ResNet34.
DEFAULT_SEED = 42
#: sha256 of the tensors of ``seeded:N`` (names, dtypes, shapes and bytes in state-dict
#: order; see ``weights.tensor_digest``). Unlike the file's own sha256 it does not depend on
#: torch's serialisation format, so it holds across torch releases.
SEEDED_TENSOR_SHA256 = {
    42: "0d7f6619f18542fd26446153815f5744422cc7f4fe3493dd2f753edc4e4659aa",
}

#: The model card's published top-5 for seeded:42 on a natural photo.
SEED_TOP5 = (134, 425, 552, 332, 676)

#: torchvision's ImageNet checkpoint for ResNet34 (IMAGENET1K_V1) and where torch.hub keeps it.
IMAGENET_CHECKPOINT = "resnet34-b627a593.pth"

CACHE_ENV = "RESNET34_NPU_CACHE"
DEFAULT_CACHE_DIR = Path("~/.cache/resnet34_npu")

PACKAGE_DIR = Path(__file__).resolve().parent.parent
#: Bundled images; present in a source checkout (the suite is run from one).
FIXTURES_DIR = PACKAGE_DIR.parent / "fixtures"
IMAGES_DIR = FIXTURES_DIR / "images"
DEFAULT_IMAGE = IMAGES_DIR / "cat.jpg"
#: The real photos among the fixtures: the defaults of ``compare`` and of the suite.
PHOTOS = ("cat.jpg", "coffee.jpg")

#: The precisions a target's arithmetic is judged at (its effective precision): every tolerance
#: table of the judge has one entry per name (``judge/metrics.py`` checks it at import).
PRECISIONS = ("fp64", "fp32", "tf32", "hf32", "fp16", "bf16")
