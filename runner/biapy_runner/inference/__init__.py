"""Model output for a whole image: normalisation of the input and tiled, blended prediction."""
