// nnf_pe: one MAC processing element of the output-stationary array.
//
//   acc <= (first ? bias : acc) + ext(a) * ext(w)
//
// ext() sign-extends a code when its flag is set, else zero-extends it (IN_W+1 bits, so the
// product of any two codes is exact in 2*IN_W+2 bits); the accumulator wraps at ACC_W bits.
// The multiply is nnf_mul_reg (operand and product registers: on ECP5 the MULT18X18D's own),
// so the routes into and out of the DSP row get a cycle each.  The sign flags are static for a
// whole instruction and are registered here, next to the multiplier, so that a flag's fan-out
// over the array never shares a cycle with the multiply.
//
// Ports and latency (cycle t = a_in/w_in/first_in present):
//   a_signed, w_signed        sampled at t-1 (registered; they hold while an instruction runs)
//   a_out, w_out, first_out   t+1  the operands, passed to the right / lower neighbour
//   product                   t+2  ext(a_in) * ext(w_in)
//   acc                       t+3  updated with that product (bias instead of acc when first)
//   res                       t+3  the previous tile's finished sum when first_in was high at
//                                  t, else 0 (the column ORs its rows' res)
// bias is sampled at t+2 (the column holds it while its rows start the tile).
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

    reg as_q, ws_q;
    always @(posedge clk) begin
        as_q <= a_signed;
        ws_q <= w_signed;
    end
    wire [IN_W:0] ea = {as_q & a_in[IN_W-1], a_in};
    wire [IN_W:0] ew = {ws_q & w_in[IN_W-1], w_in};

    wire [PW-1:0]    prod;
    reg              first_d, first_d2;
    reg [ACC_W-1:0]  acc;
    wire [ACC_W-1:0] prod_x;  // the product, sign-extended (or wrapped) to ACC_W bits

    nnf_mul_reg #(.A_W(IN_W + 1), .B_W(IN_W + 1), .A_SIGNED(1), .B_SIGNED(1)) u_mul (
        .clk(clk), .a(ea), .b(ew), .p(prod));

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
        first_d   <= first_in;
        first_d2  <= first_d;
        acc       <= (first_d2 ? bias : acc) + prod_x;
        res       <= first_d2 ? acc : {ACC_W{1'b0}};
    end
endmodule
