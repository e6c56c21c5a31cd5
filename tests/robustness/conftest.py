"""The bad-input cases break the data readers' small clean COCO set (``basic_coco``) in one place each."""

from tests.data_mix.conftest import basic_coco, write_coco

__all__ = ["basic_coco", "write_coco"]
