// nnf_pe: one MAC processing element of the output-stationary array.
//
//   acc <= (first ? bias : acc) + ext(a) * ext(w)
//
// ext() sign-extends a code when its flag is set, else zero-extends it (IN_W+1 bits, so the
// product of any two codes is exact in 2*IN_W+2 bits); the accumulator wraps at ACC_W bits.
//
// Ports and latency (cycle t = a_in/w_in/first_in present):
//   a_out, w_out, first_out   t+1  the operands, passed to the right / lower neighbour
//   product register          t+1  ext(a_in) * ext(w_in)
//   acc                       t+2  updated with that product (bias instead of acc when first)
//   res                       t+2  the previous tile's finished sum when first_in was high at
//                                  t, else 0 (the column ORs its rows' res)
// bias is sampled at t+1 (the column holds it while its rows start the tile).
module nnf_pe #(
    parameter integer IN_W = 8,
    parameter integer ACC_W = 32
) (
    input  wire             clk,
    input  wire             a_signed,
    input  wire             w_signed,
    input  wire [IN_W-1:0]  a_in,
    input  wire [IN_W-1:0]  w_in,
    input  wire             first_in,
    input  wire [ACC_W-1:0] bias,
    output reg  [IN_W-1:0]  a_out,
    output reg  [IN_W-1:0]  w_out,
    output reg              first_out,
    output reg  [ACC_W-1:0] res
);
    localparam integer PW = 2 * IN_W + 2;

    wire signed [IN_W:0] ea = {a_signed & a_in[IN_W-1], a_in};
    wire signed [IN_W:0] ew = {w_signed & w_in[IN_W-1], w_in};

    reg signed [PW-1:0] prod;
    reg                 first_d;
    reg [ACC_W-1:0]     acc;
    wire [ACC_W-1:0]    prod_x;  // the product, sign-extended (or wrapped) to ACC_W bits

    generate
        if (ACC_W > PW) begin : g_ext
            assign prod_x = {{(ACC_W - PW){prod[PW-1]}}, prod};
        end else begin : g_wrap
            assign prod_x = prod[ACC_W-1:0];
        end
    endgenerate

    always @(posedge clk) begin
        a_out     <= a_in;
        w_out     <= w_in;
        first_out <= first_in;
        prod      <= ea * ew;
        first_d   <= first_in;
        acc       <= (first_d ? bias : acc) + prod_x;
        res       <= first_d ? acc : {ACC_W{1'b0}};
    end
endmodule
