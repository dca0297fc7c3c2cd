"""Compression: magnitude pruning, weight sharing, Huffman coding and the storage report."""
