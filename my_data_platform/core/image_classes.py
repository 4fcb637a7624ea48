"""The label set of image content, read from the annotators' rulebook (``core/rulebook``).

The synthetic world draws its photos from these classes (``synth`` imports them from here), so
a generated world and a real labelling team speak the same labels.
"""

from my_data_platform.core.rulebook import image_content_rulebook

IMAGE_CLASSES: tuple[str, ...] = image_content_rulebook().label_set
