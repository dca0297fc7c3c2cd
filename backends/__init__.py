"""nnforge.backends: hardware backends (HLS C++, systolic Verilog) and their registry.

Not implemented yet: the HLS backend and the backend API are the next milestone.
"""
