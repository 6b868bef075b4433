"""Images for image–text scoring: robust loading, preprocessing, the EfficientNet-Lite0 tower, ImageNet names."""

from fuse.vision.images import ImageLoadError, load_image, load_images
from fuse.vision.preprocess import preprocess, preprocess_batch
from fuse.vision.tower import ImageTower, load_efficientnet_lite0

__all__ = ["ImageLoadError", "load_image", "load_images", "preprocess", "preprocess_batch", "ImageTower",
           "load_efficientnet_lite0"]
