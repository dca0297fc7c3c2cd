// nnf_sdp_ram: simple dual-port RAM (one synchronous write port, one registered read port).
//
// Latency: rdata <= mem[raddr] at a rising edge where re is high: one cycle from address to
// data.  rdata holds while re is low (the program memory keeps the current instruction on its
// output this way; OUTPUT holds a word on the stream while the consumer stalls).  A read of the
// address written at the same edge is not defined (the simulators return the old word, a block
// RAM what it does): the accelerator never uses such a read (below).  INIT names a $readmemh file loaded
// at simulation start (relative to the simulator's working directory); "" leaves the memory
// uninitialised.  Written for yosys to infer block RAM (memory_bram / the vendor mapping).
//
// The memory is marked no_rw_check, so yosys leaves read/write collisions to the block RAM instead
// of building "old word" logic after it (an address comparator, a register of the write data and
// a mux on every read bit, in the block RAM's output path, which needs every ns of its cycle).
// That is safe because no read whose data is used meets a write of its address: the program,
// weight, index and parameter memories are only written while nothing runs (the top ties their
// write ports off), and in the scratchpad no instruction writes words it reads (the compiler's
// allocation, backends/systolic/alloc.py); the reads that can meet a write are of padding taps,
// whose data is replaced by zeros, and the debug port's while a stream writes.
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
