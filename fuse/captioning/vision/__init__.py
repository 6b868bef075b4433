"""Images for image–text scoring: robust loading, preprocessing, the EfficientNet-Lite0 tower, ImageNet names."""

from fuse.captioning.vision.images import ImageLoadError, load_image, load_images
from fuse.captioning.vision.preprocess import preprocess, preprocess_batch
from fuse.captioning.vision.tower import ImageTower, load_efficientnet_lite0

__all__ = ["ImageLoadError", "load_image", "load_images", "preprocess", "preprocess_batch", "ImageTower",
           "load_efficientnet_lite0"]
