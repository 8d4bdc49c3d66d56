"""Hardware profiles, the emulated-hardware layer and the assets that flash an agent onto a board."""
