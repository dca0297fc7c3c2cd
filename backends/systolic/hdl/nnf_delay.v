// nnf_delay: q is d delayed by DEPTH clock cycles (DEPTH = 0: a wire).  Used for the array's
// skew and deskew, and to align control with the memory read pipelines.  No reset: a delayed
// control signal must be driven low for DEPTH cycles after reset before it is trusted (the
// units only sample these while an instruction runs).
module nnf_delay #(
    parameter integer WIDTH = 1,
    parameter integer DEPTH = 1
) (
    input  wire             clk,
    input  wire [WIDTH-1:0] d,
    output wire [WIDTH-1:0] q   // latency: DEPTH cycles
);
    generate
        if (DEPTH == 0) begin : g_wire
            assign q = d;
            wire unused_clk = clk;
        end else if (DEPTH == 1) begin : g_one
            reg [WIDTH-1:0] r;
            always @(posedge clk) r <= d;
            assign q = r;
        end else begin : g_chain
            reg [WIDTH*DEPTH-1:0] r;
            always @(posedge clk) r <= {r[WIDTH*(DEPTH-1)-1:0], d};
            assign q = r[WIDTH*DEPTH-1 -: WIDTH];
        end
    endgenerate
endmodule
