"""What every architecture of the package takes and returns."""

INPUT_SHAPE = (28, 28, 1)  # float32 images in [0, 1]
NUM_CLASSES = 10  # softmax probabilities, one per digit
