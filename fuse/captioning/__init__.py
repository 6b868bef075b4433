"""Zero-shot and controlled image captioning: the caption search (:mod:`~fuse.captioning.pipeline`),
the image–text scorers it optimizes against (:mod:`~fuse.captioning.scorers`), the image tower and
image loading (:mod:`~fuse.captioning.vision`) and the clip-art data the bundled scorer was fitted on
(:mod:`~fuse.captioning.data`)."""

from fuse.captioning.pipeline import (DEFAULT_CONFIG, OPTIMIZERS, PUBLISHED_CONFIG, Caption, CaptionConfig, Captioner,
                                      caption, steering_objective)

__all__ = ["CaptionConfig", "DEFAULT_CONFIG", "PUBLISHED_CONFIG", "OPTIMIZERS", "Caption", "caption", "Captioner", "steering_objective"]
