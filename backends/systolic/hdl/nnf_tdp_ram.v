// nnf_tdp_ram: a RAM with a read/write port A and a read port B (the scratchpad).
//
// Port A writes mem[addr_a] <= wdata_a when we_a is high, and reads rdata_a <= mem[addr_a] when
// re_a is high (one cycle; rdata_a holds while re_a is low); port B reads rdata_b <= mem[addr_b]
// when re_b is high.  A read of a word written at the same edge (on either port) is not defined:
// the accelerator never uses one (nnf_sdp_ram's header), so the memory is no_rw_check.  yosys maps
// it to block RAMs in true dual-port mode: the same blocks as a simple dual-port memory of this
// depth and width, with each port's read data on its own output pins.
//
// Why two read ports: the scratchpad's data for GEMM and the ALU must reach its register next to
// the block RAM within a cycle of the block RAM's clock-to-out, while the streams and the debug
// port take a word straight to the top's output pins.  On one port the output net has both kinds
// of load, and the placer left the register 6 ns away (84.5 MHz); port A serves the pins and the
// writes, port B only the register.
module nnf_tdp_ram #(
    parameter integer WIDTH = 8,
    parameter integer DEPTH = 256,
    parameter integer AW = (DEPTH > 1) ? $clog2(DEPTH) : 1
) (
    input  wire             clk,
    input  wire             we_a,     // port A: write mem[addr_a] <= wdata_a at this edge
    input  wire             re_a,     // port A: read, 1 cycle latency
    input  wire [AW-1:0]    addr_a,
    input  wire [WIDTH-1:0] wdata_a,
    output reg  [WIDTH-1:0] rdata_a,
    input  wire             re_b,     // port B: read, 1 cycle latency
    input  wire [AW-1:0]    addr_b,
    output reg  [WIDTH-1:0] rdata_b
);
    (* no_rw_check *)
    reg [WIDTH-1:0] mem [0:DEPTH-1];

    always @(posedge clk) begin
        if (we_a) mem[addr_a] <= wdata_a;
        if (re_a) rdata_a <= mem[addr_a];
    end
    always @(posedge clk) begin
        if (re_b) rdata_b <= mem[addr_b];
    end
endmodule
