"""Quantization: the numerics contract, configs, calibration, float layers and the quantize pass."""
