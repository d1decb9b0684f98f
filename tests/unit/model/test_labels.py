from torchvision.models import ResNet34_Weights

from resnet34_npu import class_name, class_names
from resnet34_npu.model.labels import describe, format_probability


def test_thousand_imagenet_names_from_torchvision():
    names = class_names()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert names == tuple(ResNet34_Weights.IMAGENET1K_V1.meta["categories"])
    assert class_name(0) == "tench" and class_name(134).startswith("crane")


def test_describe_reads_like_the_issue():
    assert describe(134, 0.99969) == f"[134] {class_name(134)} 0.9997"
    assert "class_" not in describe(676)
    assert format_probability(5.5e-05) == "5.50e-05" and format_probability(0.0) == "0.0000"
