"""Reading and writing files: images and ground truth (images), staged atomic outputs (outputs)."""
