"""DSP2043 mockups: load one into the store and serve it live, check it, export the tree."""
