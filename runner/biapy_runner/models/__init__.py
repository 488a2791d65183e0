"""BioImage.IO models: where a package comes from, what it describes, and running its weights."""
