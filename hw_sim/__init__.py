"""nnforge.hw_sim: C simulation (g++) and RTL simulation (cocotb) harnesses.

Not implemented yet; arrives with the hardware backends.
"""
