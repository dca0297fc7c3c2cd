// nnf_sdp_ram: simple dual-port RAM (one synchronous write port, one registered read port).
//
// Latency: rdata <= mem[raddr] at a rising edge where re is high: one cycle from address to
// data.  rdata holds while re is low (the program memory keeps the current instruction on its
// output this way; OUTPUT holds a word on the stream while the consumer stalls).  A read of the
// address written at the same edge returns the old word.  INIT names a $readmemh file loaded
// at simulation start (relative to the simulator's working directory); "" leaves the memory
// uninitialised.  Written for yosys to infer block RAM (memory_bram / the vendor mapping).
module nnf_sdp_ram #(
    parameter integer WIDTH = 8,
    parameter integer DEPTH = 256,
    parameter integer AW = (DEPTH > 1) ? $clog2(DEPTH) : 1,
    parameter INIT = ""
) (
    input  wire             clk,
    input  wire             we,     // write port: mem[waddr] <= wdata at this edge
    input  wire [AW-1:0]    waddr,
    input  wire [WIDTH-1:0] wdata,
    input  wire             re,     // read port: 1 cycle latency
    input  wire [AW-1:0]    raddr,
    output reg  [WIDTH-1:0] rdata
);
    reg [WIDTH-1:0] mem [0:DEPTH-1];

    generate
        if (INIT != "") begin : g_init
            initial $readmemh(INIT, mem);
        end
    endgenerate

    always @(posedge clk) begin
        if (we) mem[waddr] <= wdata;
        if (re) rdata <= mem[raddr];
    end
endmodule
