"""The label set of the image classifier.

The synthetic world draws its photos from these classes (``synth`` imports them from here);
the real-data rulebook will replace them.
"""

IMAGE_CLASSES: tuple[str, ...] = ("sunset", "beach", "food", "pet", "city", "portrait")
