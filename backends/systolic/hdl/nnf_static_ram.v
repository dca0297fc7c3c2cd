// nnf_static_ram: nnf_sdp_ram for a memory that is only read while the accelerator runs (the
// program, weights, indices and parameters).  Same ports, latency and $readmemh INIT.
//
// Its write port only loads it while nothing reads (the top ties the port off; a loader could use
// it), so a read and a write of one address in the same cycle cannot happen.  The memory says so
// to yosys (no_rw_check), which otherwise keeps the "a read of the address written at the same
// edge returns the old word" rule of nnf_sdp_ram with soft logic after the block RAM: an address
// comparator, a register of the write data and a mux on every read bit.  The write port stays
// (rather than a ROM), so the memory's contents are not constants to synthesis: yosys cannot trim
// it to one model's images, and every memory costs what its depth and width cost.
module nnf_static_ram #(
    parameter integer WIDTH = 8,
    parameter integer DEPTH = 256,
    parameter integer AW = (DEPTH > 1) ? $clog2(DEPTH) : 1,
    parameter INIT = ""
) (
    input  wire             clk,
    input  wire             we,     // write port (loading only): mem[waddr] <= wdata at this edge
    input  wire [AW-1:0]    waddr,
    input  wire [WIDTH-1:0] wdata,
    input  wire             re,     // read port: 1 cycle latency; rdata holds while re is low
    input  wire [AW-1:0]    raddr,
    output reg  [WIDTH-1:0] rdata
);
    (* no_rw_check *)
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
