"""The papers' data sets, read from their original files (one small module each)."""
