"""nnforge.compiler: from an ONNX model to the integer Relax module, in pipeline order.

    frontend/   read and check ONNX, import it into Relax (TVM adapter), the Relax IR adapter
    passes/     the cleanup passes, and PIPELINE: the order of every stage, in one list
    quant/      numerics contract, configs, calibration, float layers, the quantize pass
    compress/   magnitude pruning, weight sharing, Huffman coding, the storage report
    ops/        the op table: one module per quantized op (attrs, reference, lowering, pattern)
    lower/      QGraph -> integer Relax module; its CPU build and execution (TVM adapters)
    interop/    QDQ, QOperator and QONNX models in and out
    qgraph.py, qgraph_io.py, reference.py: the quantized graph, its files, the numpy reference
"""
