"""Real photos that install offline, with reference captions written for them.

Sixteen photographs that ship inside ``scikit-image`` (``skimage.data``) and ``scikit-learn``
(``load_sample_image``) — none is downloaded. For each, three reference captions written for this
project in the style of COCO captions, and the words that name the photo's main object (a caption
"names the object" when one of them occurs as a word). They are the evaluation set of the bundled
scorer on photos (image→text retrieval) and of the captioner (CIDEr against the references, object
naming); see docs/captioning.md.

Example:
    >>> from fuse.captioning.data.photos import PHOTOS, load_photo   # doctest: +SKIP
    >>> load_photo("chelsea").size                                  # doctest: +SKIP
    (451, 300)
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Photo:
    """One evaluation photo.

    Attributes:
        name: short name (``"chelsea"``).
        source: where it loads from (``"skimage.data.chelsea"``).
        references: reference captions (lower case, COCO style).
        objects: words naming the main object; a caption names it when one occurs as a whole word.
    """

    name: str
    source: str
    references: tuple[str, ...]
    objects: tuple[str, ...]

    def names_object(self, caption: str) -> bool:
        """Whether ``caption`` names the main object (any of :attr:`objects` as a whole word, any case)."""
        words = set(re.findall(r"[a-z]+", caption.lower()))
        return any(w in words for w in self.objects)


PHOTOS: tuple[Photo, ...] = (
    Photo("astronaut", "skimage.data.astronaut",
          ("a woman astronaut in an orange space suit smiling at the camera",
           "an astronaut posing with her helmet in front of an american flag",
           "portrait of a female astronaut next to a model of the space shuttle"),
          ("astronaut", "astronauts", "woman", "spacesuit", "suit", "pilot", "cosmonaut", "person", "lady")),
    Photo("chelsea", "skimage.data.chelsea",
          ("a tabby cat looking to the side",
           "close up of the face of a brown striped cat",
           "a cat with green eyes and pointed ears"),
          ("cat", "cats", "kitten", "tabby", "feline", "kitty")),
    Photo("coffee", "skimage.data.coffee",
          ("a cup of coffee on a saucer with a spoon",
           "an espresso in a red cup on a wooden table",
           "a cup of coffee seen from above"),
          ("coffee", "cup", "cups", "espresso", "mug", "latte", "cappuccino", "saucer", "tea")),
    Photo("rocket", "skimage.data.rocket",
          ("a rocket on the launch pad at night",
           "a rocket standing between towers before its launch",
           "a spacecraft lit up on the launch pad at dusk"),
          ("rocket", "rockets", "spacecraft", "missile", "launch", "shuttle", "spaceship")),
    Photo("camera", "skimage.data.camera",
          ("a man taking a photo with a camera on a tripod",
           "a black and white photo of a cameraman in a field",
           "a photographer standing behind his camera"),
          ("camera", "cameras", "photographer", "cameraman", "tripod")),
    Photo("coins", "skimage.data.coins",
          ("rows of old coins on a dark background",
           "a collection of ancient silver coins",
           "a black and white photo of many coins"),
          ("coin", "coins", "money", "currency", "medals")),
    Photo("moon", "skimage.data.moon",
          ("the surface of the moon with craters",
           "a grey image of the lunar surface",
           "craters on the moon seen from above"),
          ("moon", "lunar", "crater", "craters")),
    Photo("motorcycle", "skimage.data.stereo_motorcycle",
          ("a red motorcycle parked in a garage",
           "a motorbike in a workshop with shelves behind it",
           "a shiny red motorcycle standing indoors"),
          ("motorcycle", "motorcycles", "motorbike", "bike", "scooter", "moped")),
    Photo("brick", "skimage.data.brick",
          ("a brick wall",
           "a grey brick pavement seen from above",
           "a black and white pattern of bricks"),
          ("brick", "bricks", "wall", "pavement", "tiles")),
    Photo("grass", "skimage.data.grass",
          ("a close up of grass",
           "a black and white texture of grass blades",
           "a lawn seen from above"),
          ("grass", "lawn", "hay", "straw", "meadow")),
    Photo("gravel", "skimage.data.gravel",
          ("a close up of gravel",
           "small stones on the ground",
           "a black and white texture of pebbles"),
          ("gravel", "stones", "stone", "pebbles", "pebble", "rocks")),
    Photo("hubble", "skimage.data.hubble_deep_field",
          ("galaxies in deep space",
           "a telescope image of many stars and galaxies",
           "the night sky full of stars"),
          ("galaxy", "galaxies", "stars", "star", "space", "universe", "cosmos", "sky")),
    Photo("china", "sklearn.datasets.load_sample_image('china.jpg')",
          ("a chinese pagoda on a hill above a lake",
           "a traditional temple with a red roof among trees",
           "a tower of a palace overlooking the water"),
          ("pagoda", "temple", "palace", "tower", "shrine", "monastery")),
    Photo("flower", "sklearn.datasets.load_sample_image('flower.jpg')",
          ("an orange dahlia flower",
           "a close up of an orange flower against green leaves",
           "a blooming flower in a garden"),
          ("flower", "flowers", "dahlia", "blossom", "bloom", "daisy", "petals")),
    Photo("retina", "skimage.data.retina",
          ("a photograph of the retina of an eye",
           "an orange image of the back of the eye with blood vessels",
           "a medical scan of a human retina"),
          ("retina", "eye", "eyes", "eyeball", "fundus")),
    Photo("page", "skimage.data.page",
          ("a page of text about segmentation",
           "a printed page with a heading and paragraphs",
           "a scanned document with text"),
          ("page", "text", "document", "book", "paper", "words", "letter")),
)

BY_NAME = {p.name: p for p in PHOTOS}


def load_photo(name: str):
    """The photo ``name`` (see :data:`PHOTOS`) as an RGB PIL image. Needs scikit-image (and scikit-learn for two)."""
    from fuse.captioning.vision.images import load_image

    if name not in BY_NAME:
        raise ValueError(f"unknown photo {name!r}; use one of {sorted(BY_NAME)}")
    src = BY_NAME[name].source
    try:
        if src.startswith("sklearn"):
            from sklearn.datasets import load_sample_image

            arr = load_sample_image(src.split("'")[1])
        else:
            import skimage.data

            arr = getattr(skimage.data, src.rsplit(".", 1)[1])()
            if name == "motorcycle":
                arr = arr[0]  # (left, right, disparity): the left view
    except ImportError as e:
        raise ValueError(f"photo {name!r} needs {src.split('.')[0]}: pip install scikit-image scikit-learn "
                         "(the `vision` extra)") from e
    return load_image(arr)


def photo_set(names: list[str] | None = None) -> list[Photo]:
    """The photos by name (all when ``names`` is ``None``), in the given order."""
    if names is None:
        return list(PHOTOS)
    bad = [n for n in names if n not in BY_NAME]
    if bad:
        raise ValueError(f"unknown photos {bad}; use names from {sorted(BY_NAME)}")
    return [BY_NAME[n] for n in names]
