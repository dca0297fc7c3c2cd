# Quick start (see README.md):  make demo   and   make test
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "nnforge needs Python 3.11 (python3.11 on PATH, or make PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

## demo: the digits CNN: inspect, run (float), simulate (w4a8, checked against the numpy reference),
## compile to an HLS C++ project and verify its C simulation bit for bit on the 450 test images, then
## compile it for the systolic accelerator and verify its RTL (cocotb + Verilator) on the same images
demo: $(STAMP)
	$(BIN)/nnforge inspect examples/digits_cnn.onnx
	$(BIN)/nnforge run examples/digits_cnn.onnx --input examples/digits_test.npz -o out/digits_cnn_logits.npz --force
	$(BIN)/nnforge simulate examples/digits_cnn.onnx --data examples/digits_test.npz --calib examples/digits_calib.npz --bits w4a8 --check
	$(BIN)/nnforge compile examples/digits_cnn.onnx --backend hls --calib examples/digits_calib.npz --bits w4a8 --data examples/digits_test.npz -o out/digits_cnn_hls --force
	$(BIN)/nnforge verify out/digits_cnn_hls --data examples/digits_test.npz
	$(BIN)/nnforge compile examples/digits_cnn.onnx --backend systolic --calib examples/digits_calib.npz --bits w4a8 --data examples/digits_test.npz -o out/digits_cnn_systolic --force
	$(BIN)/nnforge verify out/digits_cnn_systolic --data examples/digits_test.npz

## test: the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest -q -rs -n 2 --durations=15

bench: $(STAMP)
	$(BIN)/python bench/float_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
