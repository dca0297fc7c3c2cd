// nnf_mul_reg: a multiplier with a register on each operand and one on the product,
//
//   p <= a_q * b_q;  a_q <= a;  b_q <= b          (latency 2: p is a*b two cycles after a, b)
//
// On ECP5 a block multiplier sits in a DSP row far from the logic that feeds and reads it, and the
// routes into and out of it each take most of a 100 MHz cycle; the MULT18X18D's own input and
// output registers (REG_INPUTA/B_CLK, REG_OUTPUT_CLK) give each route a cycle of its own.  yosys'
// synth_ecp5 maps a product to a combinational MULT18X18D and packs no registers into it, so with
// the NNF_ECP5 define (the synthesis flow sets it for ECP5 targets) the MULT18X18D is instantiated
// here with its registers on; every other flow (simulation, lint, Xilinx, whose mapper packs the
// registers into the DSP48E1 by itself, generic gates) uses the behavioural model, which has the
// same latency.  The MULT18X18D is used where yosys would map the product to exactly one
// (both operands 2..18 bits), so the DSP counts are unchanged; other shapes stay behavioural.
//
// a, b are A_W/B_W-bit operands, signed when A_SIGNED/B_SIGNED; p is the exact A_W+B_W-bit product.
module nnf_mul_reg #(
    parameter integer A_W = 9,
    parameter integer B_W = 9,
    parameter integer A_SIGNED = 1,
    parameter integer B_SIGNED = 1
) (
    input  wire                 clk,
    input  wire [A_W-1:0]       a,
    input  wire [B_W-1:0]       b,
    output wire [A_W+B_W-1:0]   p    // latency: 2 cycles
);
`ifdef NNF_ECP5
    localparam integer USE_DSP = (A_W >= 2) && (A_W <= 18) && (B_W >= 2) && (B_W <= 18);
`else
    localparam integer USE_DSP = 0;
`endif

    generate
        if (USE_DSP != 0) begin : g_dsp
            // operands extended to the DSP's 18 bits (sign or zero, as SIGNEDA/B say)
            wire [17:0] ax = {{(18 - A_W){(A_SIGNED != 0) & a[A_W-1]}}, a};
            wire [17:0] bx = {{(18 - B_W){(B_SIGNED != 0) & b[B_W-1]}}, b};
            wire [35:0] px;
            MULT18X18D #(
                .REG_INPUTA_CLK("CLK0"), .REG_INPUTB_CLK("CLK0"), .REG_OUTPUT_CLK("CLK0"),
                .GSR("DISABLED"), .RESETMODE("SYNC")
            ) u_mult (
                .A0(ax[0]), .A1(ax[1]), .A2(ax[2]), .A3(ax[3]), .A4(ax[4]), .A5(ax[5]), .A6(ax[6]),
                .A7(ax[7]), .A8(ax[8]), .A9(ax[9]), .A10(ax[10]), .A11(ax[11]), .A12(ax[12]),
                .A13(ax[13]), .A14(ax[14]), .A15(ax[15]), .A16(ax[16]), .A17(ax[17]),
                .B0(bx[0]), .B1(bx[1]), .B2(bx[2]), .B3(bx[3]), .B4(bx[4]), .B5(bx[5]), .B6(bx[6]),
                .B7(bx[7]), .B8(bx[8]), .B9(bx[9]), .B10(bx[10]), .B11(bx[11]), .B12(bx[12]),
                .B13(bx[13]), .B14(bx[14]), .B15(bx[15]), .B16(bx[16]), .B17(bx[17]),
                .C0(1'b0), .C1(1'b0), .C2(1'b0), .C3(1'b0), .C4(1'b0), .C5(1'b0), .C6(1'b0),
                .C7(1'b0), .C8(1'b0), .C9(1'b0), .C10(1'b0), .C11(1'b0), .C12(1'b0), .C13(1'b0),
                .C14(1'b0), .C15(1'b0), .C16(1'b0), .C17(1'b0),
                .SIGNEDA((A_SIGNED != 0) ? 1'b1 : 1'b0), .SIGNEDB((B_SIGNED != 0) ? 1'b1 : 1'b0),
                .SOURCEA(1'b0), .SOURCEB(1'b0),
                .CLK0(clk), .CLK1(1'b0), .CLK2(1'b0), .CLK3(1'b0),
                .CE0(1'b1), .CE1(1'b0), .CE2(1'b0), .CE3(1'b0),
                .RST0(1'b0), .RST1(1'b0), .RST2(1'b0), .RST3(1'b0),
                .P0(px[0]), .P1(px[1]), .P2(px[2]), .P3(px[3]), .P4(px[4]), .P5(px[5]), .P6(px[6]),
                .P7(px[7]), .P8(px[8]), .P9(px[9]), .P10(px[10]), .P11(px[11]), .P12(px[12]),
                .P13(px[13]), .P14(px[14]), .P15(px[15]), .P16(px[16]), .P17(px[17]),
                .P18(px[18]), .P19(px[19]), .P20(px[20]), .P21(px[21]), .P22(px[22]),
                .P23(px[23]), .P24(px[24]), .P25(px[25]), .P26(px[26]), .P27(px[27]),
                .P28(px[28]), .P29(px[29]), .P30(px[30]), .P31(px[31]), .P32(px[32]),
                .P33(px[33]), .P34(px[34]), .P35(px[35]));
            assign p = px[A_W+B_W-1:0];
        end else begin : g_soft
            // the same registers, the product inferred; both operands signed or both unsigned (as
            // Verilog multiplies them), so yosys sees the shape a plain `a * b` would give it
            reg [A_W-1:0]     a_q;
            reg [B_W-1:0]     b_q;
            reg [A_W+B_W-1:0] p_q;
            always @(posedge clk) begin
                a_q <= a; b_q <= b;
            end
            if (A_SIGNED != 0 && B_SIGNED != 0) begin : g_ss
                always @(posedge clk) p_q <= $signed(a_q) * $signed(b_q);
            end else if (A_SIGNED == 0 && B_SIGNED == 0) begin : g_uu
                always @(posedge clk) p_q <= a_q * b_q;
            end else begin : g_mixed  // one extra bit on each operand: exact for either signedness
                wire signed [A_W:0] ea = {(A_SIGNED != 0) & a_q[A_W-1], a_q};
                wire signed [B_W:0] eb = {(B_SIGNED != 0) & b_q[B_W-1], b_q};
                wire signed [A_W+B_W+1:0] pe = ea * eb;
                always @(posedge clk) p_q <= pe[A_W+B_W-1:0];
                wire unused_pe = &{1'b0, pe[A_W+B_W+1:A_W+B_W]};
            end
            assign p = p_q;
        end
    endgenerate
endmodule
