// nnf_requant: pipelined requantization of one lane,
//
//   y = saturate(round_shift(acc * mult, shift))            (docs/numerics.md)
//
// exactly as compiler/numerics.py: RND rounds floor((v + 2^(n-1)) / 2^n), TRN floors v / 2^n
// (n = shift, 0..63); the saturate stage keeps the low out_bits when `wrap` (sign-extended when
// out_signed) and then clamps to [lo, hi] (with SAT only the clamp: lo/hi already carry the
// type's range).  y is the low IN_W bits of the result.
//
// `pair` adds this value to the previous cycle's rounded value before saturating (ELTWISE ADD:
// a*m_a >> n_a arrives one cycle, b*m_b >> n_b the next with pair high).  `mult` is signed
// 17-bit: {1'b0, M} for a requantization, or a signed code for ELTWISE MUL's first pass, whose
// exact product a*b comes back on `prod` for the second pass.
//
// Stages (one register each; an unpipelined 32x16 multiply misses 100 MHz on ECP5):
//   1 operands   2 two half-width partial products (DSP-sized)   3 product
// (stages 1 and 2 are nnf_mul_reg's operand and product registers: on ECP5 the MULT18X18D's own)
//   4 arithmetic shift right by n, and bit n-1 (the round bit)    5 + round bit (+ previous)
//   6 wrap to out_bits                                            7 clamp to [lo, hi]
// Latency: y and out_valid are 7 cycles after acc/in_valid; prod is 3 cycles after acc.
// The static controls (rnd, wrap, out_signed, out_bits, lo, hi) are instruction fields: they are
// registered here (with what the stages derive from them) and must hold from one cycle before a
// value enters until it leaves; the first use is stage 4's.
module nnf_requant #(
    parameter integer IN_W = 8,
    parameter integer ACC_W = 32
) (
    input  wire             clk,
    input  wire             in_valid,
    input  wire [ACC_W-1:0] acc,
    input  wire [16:0]      mult,
    input  wire [5:0]       shift,
    input  wire             pair,
    input  wire             rnd,
    input  wire             wrap,
    input  wire             out_signed,
    input  wire [4:0]       out_bits,
    input  wire [31:0]      lo,
    input  wire [31:0]      hi,
    output wire             out_valid,
    output wire [IN_W-1:0]  y,
    output wire [ACC_W-1:0] prod
);
    localparam integer LO_W = ACC_W / 2;       // low partial product: LO_W+1 x 17 bits
    localparam integer HI_W = ACC_W - LO_W;    // high partial product: HI_W x 17 bits
    localparam integer PW = ACC_W + 17;        // the full product
    localparam integer SW = PW + 1;            // after rounding and the pair add

    // the static controls, registered next to the stages that use them
    reg             rnd_q, wrap_q, lo_gt_hi;
    reg [SW-1:0]    keep;                      // the low out_bits bits
    reg [4:0]       ob_m1;
    reg             ob_sign;                   // out_signed and out_bits != 0
    reg [31:0]      lo_x, hi_x;
    always @(posedge clk) begin
        rnd_q <= rnd;
        wrap_q <= wrap;
        keep <= ~({SW{1'b1}} << out_bits);
        ob_m1 <= out_bits - 5'd1;
        ob_sign <= out_signed & (out_bits != 5'd0);
        lo_x <= lo;
        hi_x <= hi;
        lo_gt_hi <= $signed(lo) > $signed(hi);
    end

    // 1, 2: operands, partial products
    wire [LO_W+17:0] pl2;
    wire [HI_W+16:0] ph2;
    nnf_mul_reg #(.A_W(LO_W + 1), .B_W(17), .A_SIGNED(1), .B_SIGNED(1)) u_pl (
        .clk(clk), .a({1'b0, acc[LO_W-1:0]}), .b(mult), .p(pl2));
    nnf_mul_reg #(.A_W(HI_W), .B_W(17), .A_SIGNED(1), .B_SIGNED(1)) u_ph (
        .clk(clk), .a(acc[ACC_W-1:LO_W]), .b(mult), .p(ph2));
    reg [5:0]              n1, n2;
    reg                    pair1, v1, pair2, v2;
    always @(posedge clk) begin
        n1 <= shift; pair1 <= pair; v1 <= in_valid;
        n2 <= n1; pair2 <= pair1; v2 <= v1;
    end

    // 3: product
    reg [PW-1:0] p3;
    reg [5:0]    n3;
    reg          pair3, v3;
    wire [PW-1:0] pl2_x = {{(PW - LO_W - 18){pl2[LO_W+17]}}, pl2};
    always @(posedge clk) begin
        p3 <= {ph2, {LO_W{1'b0}}} + pl2_x;
        n3 <= n2; pair3 <= pair2; v3 <= v2;
    end
    assign prod = p3[ACC_W-1:0];

    // 4: shift right by n; the round bit is bit n-1 of the (sign-extended) product
    wire [63:0] p64 = {{(64 - PW){p3[PW-1]}}, p3};
    wire [63:0] p64_sh = $signed(p64) >>> n3;
    wire [5:0]  n3m1 = n3 - 6'd1;
    reg [PW-1:0] sh4;
    reg          rb4, pair4, v4;
    always @(posedge clk) begin
        sh4 <= p64_sh[PW-1:0];
        rb4 <= rnd_q & (n3 != 6'd0) & p64[n3m1];
        pair4 <= pair3; v4 <= v3;
    end

    // 5: round (floor((v + 2^(n-1)) / 2^n) = (v >> n) + bit n-1), plus the previous value
    reg [SW-1:0] s5;
    reg          v5;
    wire [SW-1:0] sh4_x = {sh4[PW-1], sh4};
    wire [SW-1:0] rb4_x = {{(SW - 1){1'b0}}, rb4};
    always @(posedge clk) begin
        s5 <= sh4_x + (pair4 ? s5 : {SW{1'b0}}) + rb4_x;
        v5 <= v4;
    end

    // 6: wrap to out_bits (kept when !wrap); and whether the value fits 32 signed bits (a wrapped
    // one always does: out_bits <= 31), so that stage 7 compares 32 bits, not SW
    wire          w_neg = ob_sign & s5[{1'b0, ob_m1}];
    wire [SW-32:0] s5_top = s5[SW-1:31];
    reg [SW-1:0]  s6;
    reg           fit6, neg6, v6;
    always @(posedge clk) begin
        s6 <= !wrap_q ? s5 : (w_neg ? (s5 | ~keep) : (s5 & keep));
        fit6 <= wrap_q | (&s5_top) | ~(|s5_top);
        neg6 <= s5[SW-1];
        v6 <= v5;
    end

    // 7: clamp to [lo, hi] (as numpy.clip: hi wins when lo > hi); a value that does not fit 32
    // bits is below every lo when negative, else above every hi
    wire signed [31:0] s6_32 = s6[31:0];
    wire below = fit6 ? (s6_32 < $signed(lo_x[31:0])) : neg6;
    wire above = fit6 ? (s6_32 > $signed(hi_x[31:0])) : ~neg6;
    reg [IN_W-1:0] y7;
    reg            v7;
    always @(posedge clk) begin
        y7 <= (above | (below & lo_gt_hi)) ? hi_x[IN_W-1:0] : (below ? lo_x[IN_W-1:0] : s6[IN_W-1:0]);
        v7 <= v6;
    end
    assign y = y7;
    assign out_valid = v7;
endmodule
